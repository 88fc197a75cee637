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
from numba import njit

from tlkit.engine.kernels.gate_math import sigmoid, tanh

ACTIVATION_CODES = {"linear": 0, "tanh": 1, "sigmoid": 2, "relu": 3, "hard_sigmoid": 4}


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
        return 1.0 - y * y
    if code == 2:
        return y * (1.0 - y)
    if code == 3:
        return 1.0 if y > 0 else 0.0
    if code == 4:
        return 1.0 / 6.0 if 0.0 < y < 1.0 else 0.0
    return 1.0


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _carry_masked_output(dout, carry_o, b):
    """A masked step repeats the previous output, so its output gradient goes on to the step before."""
    carry_o[b] += dout[b]


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def lstm_row_forward(xwb, recb, bias, cpb, zb, cb, hb, ob, act, ract, zs, rs):
    """One sample's step over a block of w = cb.size units: gates i, f, c, o of those units at zb[0:w],
    zb[zs:zs + w], zb[2zs:2zs + w], zb[3zs:3zs + w] (xwb and bias laid out alike; xwb may be zb itself),
    made from xwb + recb + bias, recb's gates ``rs`` apart; then the units' c, h and output. All rows are
    1-D C-contiguous views (a whole row, or a row from a unit block's first gate column on), so that the
    loops vectorize."""
    w = cb.size
    for gate in range(4):
        z0, r0 = gate * zs, gate * rs
        for j in range(w):
            zb[z0 + j] = xwb[z0 + j] + recb[r0 + j] + bias[z0 + j]
    _act_range(ract, zb, 0, w)
    _act_range(ract, zb, zs, zs + w)
    _act_range(act, zb, 2 * zs, 2 * zs + w)
    _act_range(ract, zb, 3 * zs, 3 * zs + w)
    for j in range(w):
        cb[j] = zb[zs + j] * cpb[j] + zb[j] * zb[2 * zs + j]
        hb[j] = cb[j]
    _act_range(act, hb, 0, w)
    for j in range(w):
        hb[j] = zb[3 * zs + j] * hb[j]
        ob[j] = hb[j]


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_step_forward(xw, rec, bias, c_prev, h_prev, out_prev, m, act, ract, gates, c, h, out):
    """Gates i, f, c, o (Keras order) from xw + rec + bias: c = f*c_prev + i*g, h = o*act(c)."""
    u = h.shape[1]
    for b in range(h.shape[0]):
        if m[b] == 0:
            c[b] = c_prev[b]
            h[b] = h_prev[b]
            out[b] = out_prev[b]
            gates[b] = 0.0
            continue
        lstm_row_forward(xw[b], rec[b], bias, c_prev[b], gates[b], c[b], h[b], out[b], act, ract, u, u)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def lstm_row_backward(db, cob, chb, ccb, zb, cn, cp, act, ract, dzb):
    """One unmasked sample's step over a block of w = chb.size units: its gate gradients dzb (4w: i, f, c,
    o) from the output gradient db and the carried gradients of output, h and c (updated: c's carried
    on, output's and h's zeroed; the caller adds dz @ R.T to h's). zb: the step's activated gates; cn,
    cp: c after and before the step. 1-D C-contiguous rows, as ``lstm_row_forward``."""
    w = chb.size
    for j in range(w):  # act(c) first, in the o slot of dz, in one loop that vectorizes
        dzb[3 * w + j] = cn[j]
    _act_range(act, dzb, 3 * w, 4 * w)
    if act == 1 and ract == 2:  # Keras's default tanh and sigmoid: derivatives inline, a loop that vectorizes
        for j in range(w):
            dh = chb[j] + cob[j] + db[j]
            i = zb[j]
            f = zb[w + j]
            g = zb[2 * w + j]
            o = zb[3 * w + j]
            ac = dzb[3 * w + j]
            dc = ccb[j] + dh * o * (1.0 - ac * ac)
            dzb[j] = dc * g * (i * (1.0 - i))
            dzb[w + j] = dc * cp[j] * (f * (1.0 - f))
            dzb[2 * w + j] = dc * i * (1.0 - g * g)
            dzb[3 * w + j] = dh * ac * (o * (1.0 - o))
            ccb[j] = dc * f
            chb[j] = 0.0
            cob[j] = 0.0
        return
    for j in range(w):
        dh = chb[j] + cob[j] + db[j]
        i = zb[j]
        f = zb[w + j]
        g = zb[2 * w + j]
        o = zb[3 * w + j]
        ac = dzb[3 * w + j]
        dc = ccb[j] + dh * o * _act_grad(act, ac)
        dzb[j] = dc * g * _act_grad(ract, i)
        dzb[w + j] = dc * cp[j] * _act_grad(ract, f)
        dzb[2 * w + j] = dc * i * _act_grad(act, g)
        dzb[3 * w + j] = dh * ac * _act_grad(ract, o)
        ccb[j] = dc * f
        chb[j] = 0.0
        cob[j] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_step_backward(dout, carry_o, carry_h, carry_c, gates, c, c_prev, m, act, ract, dz):
    """dz (pre-activation gate gradients) of one step; updates the carried gradients of output, h and c.
    carry_h is left as the part that does not pass through the recurrent kernel (the caller adds dz @ R.T)."""
    for b in range(carry_h.shape[0]):
        if m[b] == 0:
            _carry_masked_output(dout, carry_o, b)
            dz[b] = 0.0
            continue
        lstm_row_backward(dout[b], carry_o[b], carry_h[b], carry_c[b], gates[b], c[b], c_prev[b], act, ract, dz[b])


@njit(cache=True, nogil=True, error_model="numpy")
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
            hb[j] = zb[j] * h_prev[b, j] + (1.0 - zb[j]) * zb[2 * u + j]
            out[b, j] = hb[j]


@njit(cache=True, nogil=True, error_model="numpy")
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
            da = dh * (1.0 - z) * _act_grad(act, hh)
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
