"""tlkit: Keras-compatible transfer learning and image augmentation on numpy + numba.

>>> import tlkit
>>> model = tlkit.Sequential([tlkit.Input((28, 28, 1)), tlkit.layers.Flatten(), tlkit.layers.Dense(10)])

Submodules (``tlkit.layers``, ``tlkit.optimizers``, ``tlkit.augment``, ``tlkit.zoo``...) load on
first use, so ``import tlkit`` stays fast and compiles nothing.
"""
import importlib

from tlkit.version import __version__  # noqa: F401

# No pool may spin-wait while another works (see tlkit/utils/threads.py); set before any kernel
# loads libgomp.
from tlkit.utils.threads import set_env_defaults  # noqa: E402

set_env_defaults()

# LLVM's code pages and scipy's BLAS bindings, which numba keeps resident and tlkit's kernels never use
# once loaded, given back (tlkit/utils/numba_memory.py); before the first @njit sets up numba's JIT.
from tlkit.utils import numba_memory  # noqa: E402

numba_memory.install()

from tlkit.engine.layers.input_layer import Input  # noqa: E402
from tlkit.engine.model import Model  # noqa: E402
from tlkit.engine.sequential import Sequential  # noqa: E402

_SUBMODULES = ("activations", "augment", "backend", "callbacks", "initializers", "layers", "losses", "metrics", "models",
               "ops", "optimizers", "random", "regularizers", "saving", "utils", "zoo")
# Names Keras keeps at its top level, loaded on first use.
_LAZY = {"GradientTape": "tlkit.engine.tape", "Variable": "tlkit.engine.variable", "Layer": "tlkit.engine.layer"}


def __getattr__(name):
    if name == "finetune":  # the whole `tlkit finetune` job as a function (tlkit.apps.api)
        from tlkit.apps.api import finetune

        return finetune
    if name in _SUBMODULES:
        return importlib.import_module(f"tlkit.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tlkit' has no attribute {name!r}")


# keras.utils also holds the dataset builders; tlkit keeps them in tlkit.augment, above tlkit.utils in
# the import order, so the root package (which may import anything) lends them to tlkit.utils on first use.
_UTILS_FROM_AUGMENT = ("image_dataset_from_directory", "array_to_img", "img_to_array", "load_img", "save_img")


def _utils_getattr(name):
    if name in _UTILS_FROM_AUGMENT:
        return getattr(importlib.import_module("tlkit.augment"), name)
    raise AttributeError(f"module 'tlkit.utils' has no attribute {name!r}")


importlib.import_module("tlkit.utils").__getattr__ = _utils_getattr


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES) + list(_LAZY) + ["finetune"])


__all__ = ["Input", "Model", "Sequential", "__version__", "finetune", *_SUBMODULES, *_LAZY]
