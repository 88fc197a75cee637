"""Compile (or load from numba's disk cache) the kernels a model needs before a progress bar starts
its clock: the first ETA then measures the work, and a cold start says what the wait is."""
import glob
import os
import time

import numpy as np

def kernel_cache_present():
    """Whether numba's on-disk cache holds tlkit's engine kernels (index files ``*.nbi``), next to the
    modules or under $NUMBA_CACHE_DIR."""
    from tlkit.engine import kernels

    folders = [os.path.join(os.path.dirname(kernels.__file__), "__pycache__")]
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if cache_dir:
        folders.append(os.path.join(cache_dir, "**"))
    return any(glob.glob(os.path.join(folder, "*.nbi"), recursive=True) for folder in folders)


def warm_up(model, say):
    """Run ``model`` once on a single blank input; ``say`` a line first on a cold start. Once per model."""
    if getattr(model, "_tlkit_warmed_up", False):
        return
    cold = not kernel_cache_present()
    if cold:
        say("compiling kernels (once; later runs load them from the cache)...")
    start = time.time()
    shape = tuple(model.input_shape[1:])
    model(np.zeros((1,) + shape, np.float32), training=False)
    model._tlkit_warmed_up = True
    if cold:
        say(f"compiled in {time.time() - start:.0f} s")
