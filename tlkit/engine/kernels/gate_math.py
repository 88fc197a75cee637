"""Sigmoid and tanh for the recurrent gate kernels (recurrent_cells.py), written so the compiler can
vectorize the loops that call them: libm's expf and tanhf are one call per element, and no loop around
a call vectorizes.

In float32 everything runs in float32 lanes (twice as many a vector as float64): exp by Cody-Waite
range reduction (x = n ln2 + r, ln2 in two parts, |r| <= ln2/2), a degree-7 polynomial for exp(r) and
2**n built in the exponent bits; only exp(-|x|) is ever taken, so it neither overflows nor needs a
branch: sigmoid = 1/(1+e) or e/(1+e), tanh = (1-e)/(1+e) with e = exp(-2|x|), and an odd polynomial
below |x| = 0.625 where that quotient would lose digits. Error: a few float32 ulp (the measured bound is
in tests/engine/kernels/test_gate_math.py), as torch's and oneDNN's vectorized float32 forms. float64
arrays (the gradient checks) keep math.exp / math.tanh exactly. Numba picks the form from the
argument's type (``overload``); plain Python calls get the exact form.
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from tlkit.engine.kernels.intrinsics import float32_from_bits

_F = np.float32
# exp(-87) = 1.6e-38 is still a normal float32 (2**n stays >= 2**-126); tanh(9) rounds to 1.
EXP_ARG_MAX = _F(87.0)
TANH_ARG_MAX = _F(9.0)
# Below this |x|, tanh's odd polynomial; above, (1-e)/(1+e) loses no digits (tanh(0.625) = 0.55).
TANH_POLY_MAX = _F(0.625)
_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693359375)  # exact in 9 bits: n * _LN2_HI is exact for |n| < 2**15
_LN2_LO = _F(-2.12194440e-4)
# exp(r) = 1 + r + r**2 (c2 + c3 r + ... + c7 r**5) on |r| <= ln2/2 (Cephes expf's coefficients).
_EXP_C = (_F(5.0000001201e-1), _F(1.6666665459e-1), _F(4.1665795894e-2), _F(8.3334519073e-3),
          _F(1.3981999507e-3), _F(1.9875691500e-4))
# tanh(x) = x + x**3 P(x**2) on |x| <= 0.625 (Cephes tanhf's coefficients).
_TANH_P = (_F(-3.33332819422e-1), _F(1.33314422036e-1), _F(-5.37397155531e-2), _F(2.06390887954e-2),
           _F(-5.70498872745e-3))
_ONE, _HALF, _TWO = _F(1.0), _F(0.5), _F(2.0)
_ROUND_BIAS = _F(127.5)  # floor(t + 0.5) = int(t + 127.5) - 127 for t > -127.5: truncation is a floor there


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _exp_neg32(a):
    """exp(-a) for float32 a in [0, 87]."""
    x = -a
    n = np.int32(x * _LOG2E + _ROUND_BIAS) - 127
    fn = np.float32(n)
    r = (x - fn * _LN2_HI) - fn * _LN2_LO
    c = _EXP_C
    p = c[5] * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    p = (p * r) * r + r + _ONE
    return p * float32_from_bits((n + 127) << 23)


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
            a = abs(v)
            a = EXP_ARG_MAX if a > EXP_ARG_MAX else a  # selects, not min/max: these vectorize
            e = _exp_neg32(a)
            return (_ONE if v >= 0 else e) / (_ONE + e)
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
            a = abs(v)
            a = TANH_ARG_MAX if a > TANH_ARG_MAX else a
            e = _exp_neg32(_TWO * a)
            t = (_ONE - e) / (_ONE + e)
            z = v * v
            p = _TANH_P
            s = p[4] * z + p[3]
            s = s * z + p[2]
            s = s * z + p[1]
            s = s * z + p[0]
            small = (s * z) * v + v
            big = t if v >= 0 else -t
            return small if a < TANH_POLY_MAX else big
        return fast
    return lambda v: math.tanh(v)
