"""``tlkit.layers``: the Keras layer names (the engine's, and the image preprocessing layers of
``tlkit.augment.layers``)."""
from tlkit.augment.layers import *  # noqa: F401,F403
from tlkit.augment.layers import __all__ as _preprocessing
from tlkit.engine.layers import *  # noqa: F401,F403
from tlkit.engine.layers import __all__ as _engine

__all__ = list(_engine) + list(_preprocessing)
