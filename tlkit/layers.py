"""``tlkit.layers``: the Keras layer names (the engine's, and the image preprocessing layers of
``tlkit.augment.layers``), and ``serialize``/``deserialize`` of one layer."""
from tlkit.augment.layers import *  # noqa: F401,F403
from tlkit.augment.layers import __all__ as _preprocessing
from tlkit.engine.layers import *  # noqa: F401,F403
from tlkit.engine.layers import __all__ as _engine
from tlkit.engine.saving.config import deserialize_layer as deserialize  # noqa: F401
from tlkit.engine.saving.config import serialize_layer as serialize  # noqa: F401

__all__ = [*_engine, *_preprocessing, "serialize", "deserialize"]
