"""``tlkit.metrics``."""
from tlkit.engine.metrics import *  # noqa: F401,F403
from tlkit.engine.metrics import get  # noqa: F401
