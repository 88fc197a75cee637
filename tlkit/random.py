"""``tlkit.random``: Keras 3's random ops (``keras.random``)."""
from tlkit.engine.ops.random import *  # noqa: F401,F403
from tlkit.engine.ops.random import __all__  # noqa: F401
