"""Keras's other GRU (``reset_after=False``, the GRU of Cho et al. 2014 and of Keras 2's default):
the reset gate scales the previous state before its recurrent product,

    z = rec_act(x_z + h_prev@R_z),  r = rec_act(x_r + h_prev@R_r)      (one bias (3u,), in x_*)
    hh = act(x_h + (r*h_prev)@R_h),  h = z*h_prev + (1-z)*hh

so a step takes two products: h_prev@R_zr before the gates, (r*h_prev)@R_h after them (each a
recurrent_products.StepProduct). The drivers
(per-step loops and products) are here, beside the fused element-wise kernels of the two halves; the
sequence-level set-up is ``recurrent.rnn_forward`` / ``rnn_backward``. Masked samples keep their state
and repeat their output (as in recurrent_cells.py). With recurrent dropout, h_prev in the products is
the dropped state ``hp``; the carried state is not.
"""
import numpy as np
from numba import njit

from tlkit.engine.kernels.recurrent_cells import _act, _act_grad, _carry_masked_output
from tlkit.engine.kernels.recurrent_products import StepProduct
from tlkit.utils.threads import matmul_tn


@njit(cache=True, nogil=True, error_model="numpy")
def gates_forward(xw, rec_zr, bias, hp, m, ract, gates, rh):
    """z and r of one step (from xw + bias + rec_zr) into ``gates``; ``rh`` = r*hp, the input of the
    candidate's product."""
    n, u = rh.shape
    for b in range(n):
        if m[b] == 0:
            gates[b] = 0.0
            rh[b] = 0.0
            continue
        for j in range(u):
            z = _act(ract, xw[b, j] + bias[j] + rec_zr[b, j])
            r = _act(ract, xw[b, u + j] + bias[u + j] + rec_zr[b, u + j])
            gates[b, j] = z
            gates[b, u + j] = r
            rh[b, j] = r * hp[b, j]


@njit(cache=True, nogil=True, error_model="numpy")
def state_forward(xw, rec_h, bias, h_prev, out_prev, m, act, gates, h, out):
    n, u = h.shape
    for b in range(n):
        if m[b] == 0:
            h[b] = h_prev[b]
            out[b] = out_prev[b]
            continue
        for j in range(u):
            z = gates[b, j]
            hh = _act(act, xw[b, 2 * u + j] + bias[2 * u + j] + rec_h[b, j])
            hj = z * h_prev[b, j] + (1.0 - z) * hh
            gates[b, 2 * u + j] = hh
            h[b, j] = hj
            out[b, j] = hj


@njit(cache=True, nogil=True, error_model="numpy")
def state_backward(dout, carry_o, carry_h, gates, h_prev, m, act, ract, dz):
    """The z and candidate parts of ``dz`` (3u pre-activation gradients); carry_h becomes z*dh."""
    n, u = carry_h.shape
    for b in range(n):
        if m[b] == 0:
            _carry_masked_output(dout, carry_o, b)
            dz[b] = 0.0
            continue
        for j in range(u):
            dh = carry_h[b, j] + carry_o[b, j] + dout[b, j]
            z = gates[b, j]
            hh = gates[b, 2 * u + j]
            dz[b, j] = dh * (h_prev[b, j] - hh) * _act_grad(ract, z)
            dz[b, 2 * u + j] = dh * (1.0 - z) * _act_grad(act, hh)
            carry_h[b, j] = dh * z
            carry_o[b, j] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def reset_backward(d_rh, gates, hp, m, ract, dz, back):
    """The r part of ``dz`` from d(r*hp) = ``d_rh``; ``back`` gets d(r*hp)/d hp's share, r*d_rh."""
    n, u = back.shape
    for b in range(n):
        if m[b] == 0:
            for j in range(u):
                dz[b, u + j] = 0.0
                back[b, j] = 0.0
            continue
        for j in range(u):
            r = gates[b, u + j]
            dz[b, u + j] = d_rh[b, j] * hp[b, j] * _act_grad(ract, r)
            back[b, j] = d_rh[b, j] * r


def forward_steps(xw, recurrent_kernel, bias, h, out, zero_out, gates, rh, m, act, ract, recurrent_dropout):
    units = h.shape[2]
    n = h.shape[1]
    r_zr = StepProduct(np.ascontiguousarray(recurrent_kernel[:, :2 * units]), n)
    r_h = StepProduct(np.ascontiguousarray(recurrent_kernel[:, 2 * units:]), n)
    rec_zr = np.empty((n, 2 * units), h.dtype)
    rec_h = np.empty((n, units), h.dtype)
    for t in range(xw.shape[0]):
        hp = h[t] if recurrent_dropout is None else h[t] * recurrent_dropout
        r_zr(hp, rec_zr)
        gates_forward(xw[t], rec_zr, bias, hp, m[t], ract, gates[t], rh[t])
        r_h(rh[t], rec_h)
        state_forward(xw[t], rec_h, bias, h[t], out[t - 1] if t else zero_out, m[t], act, gates[t], h[t + 1], out[t])


def backward_steps(seq, d_out, zeros, carry_o, carry_h, dz):
    """Fills dz (T, B, 3u) and leaves in carry_h the gradient of the initial state."""
    units = carry_h.shape[1]
    rk = seq.recurrent_kernel
    n = carry_h.shape[0]
    r_zr_t = StepProduct(np.ascontiguousarray(rk[:, :2 * units].T), n)
    r_h_t = StepProduct(np.ascontiguousarray(rk[:, 2 * units:].T), n)
    rd = seq.recurrent_dropout
    d_rh = np.empty_like(carry_h)
    back = np.empty_like(carry_h)
    via_gates = np.empty_like(carry_h)
    for t in range(seq.out.shape[0] - 1, -1, -1):
        hp = seq.h[t] if rd is None else seq.h[t] * rd
        state_backward(zeros if d_out is None else d_out[t], carry_o, carry_h, seq.gates[t], seq.h[t], seq.m[t],
                       seq.act, seq.ract, dz[t])
        r_h_t(dz[t][:, 2 * units:], d_rh)
        reset_backward(d_rh, seq.gates[t], hp, seq.m[t], seq.ract, dz[t], back)
        r_zr_t.add(dz[t][:, :2 * units], back, via_gates)
        if rd is not None:
            back *= rd
        carry_h += back


def recurrent_kernel_grad(seq, dz):
    """d recurrent_kernel: h_prev (dropped) against the z, r columns, r*h_prev against the candidate's."""
    t_len, n, g = dz.shape
    units = g // 3
    rd = seq.recurrent_dropout
    hp = (seq.h[:-1] if rd is None else seq.h[:-1] * rd).reshape(t_len * n, units)
    dz2 = dz.reshape(t_len * n, g)
    out = np.empty((units, g), dz.dtype)
    matmul_tn(hp, dz2[:, :2 * units], out[:, :2 * units])
    matmul_tn(seq.rh.reshape(t_len * n, units), dz2[:, 2 * units:], out[:, 2 * units:])
    return out
