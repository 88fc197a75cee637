"""What follows a convolution at inference, applied in place in one pass over its output: a
residual added and a clip (ReLU: [0, inf), ReLU6: [0, 6]).

    add_residual_clip(y2, residual2, 0.0, 6.0)    # y2 (rows, F) C-contiguous; residual2 (rows, F) or None
"""
import numpy as np
from numba import njit, prange

__all__ = ["add_residual_clip"]


@njit(cache=True, nogil=True, parallel=True)
def _add_residual_clip(y, residual, has_residual, lo, hi):
    rows, f = y.shape
    for i in prange(rows):
        row = y[i]
        for j in range(f):
            v = row[j]
            if has_residual:
                v += residual[i, j]
            row[j] = min(max(v, lo), hi)


def add_residual_clip(y, residual=None, low=None, high=None):
    """y = clip(y + residual, low, high) in place; y and residual (rows, F), y C-contiguous; a bound
    of None is no bound. Returns y."""
    has_residual = residual is not None
    r = np.ascontiguousarray(residual, np.float32) if has_residual else np.zeros((1, 1), np.float32)
    _add_residual_clip(y, r, has_residual, np.float32(-np.inf if low is None else low),
                       np.float32(np.inf if high is None else high))
    return y
