"""``tlkit.losses``."""
from tlkit.engine.losses import *  # noqa: F401,F403
from tlkit.engine.losses import get  # noqa: F401
