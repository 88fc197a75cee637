"""The bias gradient of a layer that adds one bias per channel: dy summed over every other axis.

    db = bias_grad(dy.reshape(-1, f))        # (F,) float32

Why not ``dy2.sum(0)``: numpy sums an (M, F) array along its long axis one short row at a time, ~20x
slower than BLAS's matrix-vector product with a vector of ones for F = 16 (0.6 ms of an 8 ms
training step of a small CNN, against 0.03 ms).
"""
import numpy as np

from tlkit.utils import threads

_ones = {"vector": np.ones(0, np.float32)}  # grown as needed, never written after it is made


def _ones_of(m):
    ones = _ones["vector"]
    if ones.shape[0] < m:
        ones = _ones["vector"] = np.ones(max(m, 2 * ones.shape[0]), np.float32)
    return ones[:m]


def bias_grad(dy2):
    """(F,) sums of the columns of a 2-D (M, F) array: float32, or float64 for a float64 array
    (gradient checks), which numpy sums."""
    if dy2.dtype == np.float64:
        return dy2.sum(0)
    dy2 = np.asarray(dy2, dtype=np.float32)
    out = np.empty(dy2.shape[1], np.float32)
    threads.limit_blas()
    np.dot(_ones_of(dy2.shape[0]), dy2, out=out)
    return out
