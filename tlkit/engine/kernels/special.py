"""Elementwise special functions numpy lacks (erf, for the exact GELU)."""
import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _erf_flat(x, out):
    for i in range(x.size):
        out[i] = math.erf(x[i])


def erf(x):
    """erf of a float array (any shape), in its dtype."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.float64
    flat = np.ascontiguousarray(x, dtype).reshape(-1)
    out = np.empty_like(flat)
    _erf_flat(flat, out)
    return out.reshape(x.shape)
