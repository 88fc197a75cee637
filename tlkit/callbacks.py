"""``tlkit.callbacks``."""
from tlkit.engine.callbacks import *  # noqa: F401,F403
