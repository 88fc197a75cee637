"""tlkit: Keras-compatible transfer learning and image augmentation on numpy + numba.

>>> import tlkit
>>> model = tlkit.Sequential([tlkit.Input((28, 28, 1)), tlkit.layers.Flatten(), tlkit.layers.Dense(10)])

Submodules (``tlkit.layers``, ``tlkit.optimizers``, ``tlkit.augment``, ``tlkit.zoo``...) load on
first use, so ``import tlkit`` stays fast and compiles nothing.
"""
import importlib

__version__ = "0.1.0"

# No pool may spin-wait while another works (see tlkit/utils/threads.py); set before any kernel
# loads libgomp.
from tlkit.utils.threads import set_env_defaults  # noqa: E402

set_env_defaults()

from tlkit.engine.layers.input_layer import Input  # noqa: E402
from tlkit.engine.model import Model  # noqa: E402
from tlkit.engine.sequential import Sequential  # noqa: E402

_SUBMODULES = ("activations", "augment", "callbacks", "initializers", "layers", "losses", "metrics", "models",
               "optimizers", "regularizers", "utils", "zoo")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"tlkit.{name}")
    raise AttributeError(f"module 'tlkit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))


__all__ = ["Input", "Model", "Sequential", "__version__", *_SUBMODULES]
