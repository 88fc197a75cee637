"""``tlkit.optimizers`` (and ``tlkit.optimizers.schedules``)."""
from tlkit.engine.optimizers import *  # noqa: F401,F403
from tlkit.engine.optimizers import get, schedules  # noqa: F401
