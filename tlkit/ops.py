"""``tlkit.ops``: Keras 3's ops (``keras.ops``) on numpy arrays, differentiable on a GradientTape."""
from tlkit.engine.ops import *  # noqa: F401,F403
from tlkit.engine.ops import __all__  # noqa: F401
