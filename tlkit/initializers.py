"""``tlkit.initializers``."""
from tlkit.engine.initializers import *  # noqa: F401,F403
