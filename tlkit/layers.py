"""``tlkit.layers``: the Keras layer names."""
from tlkit.engine.layers import *  # noqa: F401,F403
from tlkit.engine.layers import __all__  # noqa: F401
