"""The thread count of numpy's BLAS (the OpenBLAS numpy's wheels ship), for a block of code.

    with blas_threads(1):
        for t in range(steps):
            np.matmul(h, recurrent_kernel, out=z)   # small products: one thread each

Small products in a tight loop (an RNN's per-step state x recurrent kernel) lose more to handing work
to BLAS threads, and to those threads busy-waiting between calls while the loop's other kernels need
the cores, than they gain; on a busy machine the loss is several-fold. OpenBLAS's per-thread setting
is used when present (other threads keep theirs). Without a recognisable OpenBLAS this does nothing.
"""
import ctypes
import glob
import os

import numpy as np

_api = None


def _find_api():
    """(set_local, None) or (set_global, get_global), or () when numpy's BLAS is not a known OpenBLAS."""
    libs_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs_dir, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)  # already loaded by numpy: the same instance
        except OSError:
            continue
        local = getattr(lib, "openblas_set_num_threads_local", None)
        if local is not None:
            local.restype, local.argtypes = ctypes.c_int, [ctypes.c_int]
            return local, None
        for suffix in ("64_", "_64_", ""):
            setter = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
            getter = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
            if setter is not None and getter is not None:
                setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
                return setter, getter
    return ()


class blas_threads:
    """Run the block with numpy's BLAS limited to ``n`` threads; the previous count comes back after."""

    def __init__(self, n):
        self.n = int(n)

    def __enter__(self):
        global _api
        if _api is None:
            _api = _find_api()
        self._old = None
        if _api:
            setter, getter = _api
            if getter is None:
                self._old = setter(self.n)
            else:
                self._old = getter()
                setter(self.n)
        return self

    def __exit__(self, *exc):
        if _api and self._old is not None and self._old > 0:
            _api[0](self._old)
        return False
