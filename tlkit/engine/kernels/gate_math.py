"""Sigmoid and tanh for the recurrent gate kernels (recurrent_cells.py), written so the compiler can
vectorize the loops that call them: libm's expf and tanhf are one call per element, and no loop around
a call vectorizes.

In float32, exp is a degree-9 Taylor polynomial of x/256 raised to the 256th power by 8 squarings, in
float64 on an argument clamped to [-88, 88]: relative error under 2e-9, far below float32's 6e-8; no
call, no branch. float64 arrays (the gradient checks) keep math.exp / math.tanh exactly. Numba picks the
form from the argument's type (``overload``); plain Python calls get the exact form.
"""
import math

from numba import njit, types
from numba.extending import overload

# exp's argument range in float32: sigmoid(-88) = 6e-39 is below float32's smallest normal, tanh(44) rounds to 1.
EXP_CLAMP = 88.0
# Below this |x|, tanh(x) = x to float32's precision (the next term, x**3/3, is 3e-9 of x).
TANH_LINEAR = 1e-4


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _exp_clamped(x):
    """exp(x) for float64 x in [-88, 88]."""
    y = x * (1.0 / 256.0)
    p = 1.0 + y * (1.0 + y * (1.0 / 2.0 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0 + y * (
        1.0 / 720.0 + y * (1.0 / 5040.0 + y * (1.0 / 40320.0 + y * (1.0 / 362880.0)))))))))
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    return p * p


def sigmoid(v):
    """1 / (1 + exp(-v))."""
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def tanh(v):
    return math.tanh(v)


def _is_float32(v):
    return isinstance(v, types.Float) and v.bitwidth == 32


@overload(sigmoid)
def _sigmoid_typed(v):
    if _is_float32(v):
        def fast(v):
            x = v * 1.0
            x = -EXP_CLAMP if x < -EXP_CLAMP else x  # selects, not min/max: these vectorize
            x = EXP_CLAMP if x > EXP_CLAMP else x
            return 1.0 / (1.0 + _exp_clamped(-x))
        return fast

    def exact(v):
        if v >= 0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)
    return exact


@overload(tanh)
def _tanh_typed(v):
    if _is_float32(v):
        def fast(v):
            x = v * 1.0
            x = -0.5 * EXP_CLAMP if x < -0.5 * EXP_CLAMP else x
            x = 0.5 * EXP_CLAMP if x > 0.5 * EXP_CLAMP else x
            t = 1.0 - 2.0 / (_exp_clamped(2.0 * x) + 1.0)
            return x if abs(x) < TANH_LINEAR else t
        return fast
    return lambda v: math.tanh(v)
