"""Fused element-wise gate maths of one time step of LSTM, GRU (reset_after) and SimpleRNN, forward and
backward, for the whole batch at once. The matrix products (input projection, recurrent product) are
BLAS calls made by the drivers in ``recurrent.py``; these kernels do everything between them.

Arrays are (batch, gates*units) rows of one step. ``m`` is the step's mask (1 = real step, 0 = masked):
a masked sample keeps its previous state and repeats its previous output, as Keras does. The forward
kernels may be given the same array as the input projection ``xw`` and as ``gates`` (each element is read
before it is overwritten). Activations
are coded as ints (see ``ACTIVATION_CODES``); their derivatives are taken from their outputs. Sigmoid
and tanh come from gate_math.py and run as one loop per gate block (``_act_range``), so that the loops
vectorize in float32.
"""
import numpy as np
from numba import njit

from tlkit.engine.kernels.gate_math import sigmoid, tanh

ACTIVATION_CODES = {"linear": 0, "tanh": 1, "sigmoid": 2, "relu": 3, "hard_sigmoid": 4}
# A float32 one: a Python 1.0 would make float32 arithmetic float64 (half the vector lanes); in float64
# kernels it widens exactly.
_ONE = np.float32(1.0)
# FMA contraction in the gate kernels: one rounding fewer per multiply-add, one instruction.
_FAST = {"contract"}


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _act(code, v):
    if code == 1:
        return tanh(v)
    if code == 2:
        return sigmoid(v)
    if code == 3:
        return v if v > 0 else 0.0 * v
    if code == 4:  # Keras 3: relu6(x + 3) / 6
        return min(max(v / 6.0 + 0.5, 0.0 * v), 1.0 + 0.0 * v)
    return v


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _act_range(code, z, lo, hi):
    """z[lo:hi] = act(z[lo:hi]) in place: one loop per activation, so that each loop vectorizes (over a
    view from 0, where the index is known non-negative and needs no wraparound)."""
    v = z[lo:hi]
    if code == 2:
        for k in range(v.size):
            v[k] = sigmoid(v[k])
    elif code == 1:
        for k in range(v.size):
            v[k] = tanh(v[k])
    else:
        for k in range(v.size):
            v[k] = _act(code, v[k])


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _act_grad(code, y):
    """d act / d input, from the activation's output y."""
    if code == 1:
        return _ONE - y * y
    if code == 2:
        return y * (_ONE - y)
    if code == 3:
        return 1.0 if y > 0 else 0.0
    if code == 4:
        return 1.0 / 6.0 if 0.0 < y < 1.0 else 0.0
    return 1.0


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _carry_masked_output(dout, carry_o, b):
    """A masked step repeats the previous output, so its output gradient goes on to the step before."""
    carry_o[b] += dout[b]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def lstm_step_forward(xw, rec, bias, c_prev, h_prev, out_prev, m, act, ract, gates, c, h, out):
    """Gates i, f, c, o (Keras order) from xw + rec + bias: c = f*c_prev + i*g, h = o*act(c)."""
    n, u = h.shape
    for b in range(n):
        if m[b] == 0:
            c[b] = c_prev[b]
            h[b] = h_prev[b]
            out[b] = out_prev[b]
            gates[b] = 0.0
            continue
        zb, cb, hb = gates[b], c[b], h[b]
        for k in range(4 * u):
            zb[k] = xw[b, k] + rec[b, k] + bias[k]
        _act_range(ract, zb, 0, 2 * u)
        _act_range(act, zb, 2 * u, 3 * u)
        _act_range(ract, zb, 3 * u, 4 * u)
        for j in range(u):
            cb[j] = zb[u + j] * c_prev[b, j] + zb[j] * zb[2 * u + j]
            hb[j] = cb[j]
        _act_range(act, hb, 0, u)
        for j in range(u):
            hb[j] = zb[3 * u + j] * hb[j]
            out[b, j] = hb[j]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def lstm_step_backward(dout, carry_o, carry_h, carry_c, gates, c, c_prev, m, act, ract, dz):
    """dz (pre-activation gate gradients) of one step; updates the carried gradients of output, h and c.
    carry_h is left as the part that does not pass through the recurrent kernel (the caller adds dz @ R.T)."""
    n, u = carry_h.shape
    for b in range(n):
        if m[b] == 0:
            _carry_masked_output(dout, carry_o, b)
            dz[b] = 0.0
            continue
        dzb = dz[b]
        for j in range(u):  # act(c) first, in the o slot of dz, in one loop that vectorizes
            dzb[3 * u + j] = c[b, j]
        _act_range(act, dzb, 3 * u, 4 * u)
        if act == 1 and ract == 2:  # Keras's default tanh and sigmoid: derivatives inline, a loop that vectorizes
            for j in range(u):
                dh = carry_h[b, j] + carry_o[b, j] + dout[b, j]
                i = gates[b, j]
                f = gates[b, u + j]
                g = gates[b, 2 * u + j]
                o = gates[b, 3 * u + j]
                ac = dzb[3 * u + j]
                dc = carry_c[b, j] + dh * o * (_ONE - ac * ac)
                dzb[j] = dc * g * (i * (_ONE - i))
                dzb[u + j] = dc * c_prev[b, j] * (f * (_ONE - f))
                dzb[2 * u + j] = dc * i * (_ONE - g * g)
                dzb[3 * u + j] = dh * ac * (o * (_ONE - o))
                carry_c[b, j] = dc * f
                carry_h[b, j] = 0.0
                carry_o[b, j] = 0.0
            continue
        for j in range(u):
            dh = carry_h[b, j] + carry_o[b, j] + dout[b, j]
            i = gates[b, j]
            f = gates[b, u + j]
            g = gates[b, 2 * u + j]
            o = gates[b, 3 * u + j]
            ac = dzb[3 * u + j]
            dc = carry_c[b, j] + dh * o * _act_grad(act, ac)
            dz[b, j] = dc * g * _act_grad(ract, i)
            dz[b, u + j] = dc * c_prev[b, j] * _act_grad(ract, f)
            dz[b, 2 * u + j] = dc * i * _act_grad(act, g)
            dz[b, 3 * u + j] = dh * ac * _act_grad(ract, o)
            carry_c[b, j] = dc * f
            carry_h[b, j] = 0.0
            carry_o[b, j] = 0.0


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def gru_step_forward(xw, rec, bias, rec_bias, h_prev, out_prev, m, act, ract, gates, hr, h, out):
    """Gates z, r, h (Keras order), reset after the recurrent product (x_* = xw + bias):
    hh = act(x_h + r*(h_prev@R_h + b_h)), h = z*h_prev + (1-z)*hh. ``hr`` keeps h_prev@R_h + b_h."""
    n, u = h.shape
    for b in range(n):
        if m[b] == 0:
            h[b] = h_prev[b]
            out[b] = out_prev[b]
            gates[b] = 0.0
            hr[b] = 0.0
            continue
        zb, hrb, hb = gates[b], hr[b], h[b]
        for k in range(2 * u):
            zb[k] = xw[b, k] + bias[k] + rec[b, k] + rec_bias[k]
        _act_range(ract, zb, 0, 2 * u)
        for j in range(u):
            hrb[j] = rec[b, 2 * u + j] + rec_bias[2 * u + j]
            zb[2 * u + j] = xw[b, 2 * u + j] + bias[2 * u + j] + zb[u + j] * hrb[j]
        _act_range(act, zb, 2 * u, 3 * u)
        for j in range(u):
            hb[j] = zb[j] * h_prev[b, j] + (_ONE - zb[j]) * zb[2 * u + j]
            out[b, j] = hb[j]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def gru_step_backward(dout, carry_o, carry_h, gates, hr, h_prev, m, act, ract, dzx, dzr):
    """dzx: gradient of the input projection's 3u pre-activations; dzr: of the recurrent product's.
    carry_h becomes the direct path z*dh (the caller adds dzr @ R.T)."""
    n, u = carry_h.shape
    for b in range(n):
        if m[b] == 0:
            _carry_masked_output(dout, carry_o, b)
            dzx[b] = 0.0
            dzr[b] = 0.0
            continue
        for j in range(u):
            dh = carry_h[b, j] + carry_o[b, j] + dout[b, j]
            z = gates[b, j]
            r = gates[b, u + j]
            hh = gates[b, 2 * u + j]
            da = dh * (_ONE - z) * _act_grad(act, hh)
            dzp = dh * (h_prev[b, j] - hh) * _act_grad(ract, z)
            drp = da * hr[b, j] * _act_grad(ract, r)
            dzx[b, j] = dzp
            dzx[b, u + j] = drp
            dzx[b, 2 * u + j] = da
            dzr[b, j] = dzp
            dzr[b, u + j] = drp
            dzr[b, 2 * u + j] = da * r
            carry_h[b, j] = dh * z
            carry_o[b, j] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def simple_step_forward(xw, rec, bias, h_prev, out_prev, m, act, h, out):
    n, u = h.shape
    for b in range(n):
        if m[b] == 0:
            h[b] = h_prev[b]
            out[b] = out_prev[b]
            continue
        for j in range(u):
            hj = _act(act, xw[b, j] + rec[b, j] + bias[j])
            h[b, j] = hj
            out[b, j] = hj


@njit(cache=True, nogil=True, error_model="numpy")
def simple_step_backward(dout, carry_o, carry_h, h, m, act, dz):
    n, u = carry_h.shape
    for b in range(n):
        if m[b] == 0:
            _carry_masked_output(dout, carry_o, b)
            dz[b] = 0.0
            continue
        for j in range(u):
            dh = carry_h[b, j] + carry_o[b, j] + dout[b, j]
            dz[b, j] = dh * _act_grad(act, h[b, j])
            carry_h[b, j] = 0.0
            carry_o[b, j] = 0.0
