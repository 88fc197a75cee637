"""``tlkit.regularizers``."""
from tlkit.engine.regularizers import L1, L1L2, L2, get, l1, l1_l2, l2  # noqa: F401
