"""``tlkit.layers``: the Keras layer names, and ``serialize``/``deserialize`` of one layer."""
from tlkit.engine.layers import *  # noqa: F401,F403
from tlkit.engine.layers import __all__ as _layer_names
from tlkit.engine.saving.config import deserialize_layer as deserialize  # noqa: F401
from tlkit.engine.saving.config import serialize_layer as serialize  # noqa: F401

__all__ = [*_layer_names, "serialize", "deserialize"]
