"""Forward and backward through time for LSTM, GRU (reset_after, and reset before: gru_reset_before.py)
and SimpleRNN.

    seq = rnn_forward("lstm", x_tm, W, R, b_in, None, h0, c0, mask_tm, "tanh", "sigmoid")
    grads = rnn_backward(seq, d_out_tm, d_last, d_h, d_c)

Arrays are time-major: x_tm (T, B, in), outputs (T, B, units), mask_tm (T, B) of 0/1. The input
projection of all steps is one matmul; each step does one matmul of the batch's state with the
recurrent kernel and one fused kernel for the gate maths (recurrent_cells.py). Backward through time
does one matmul per step (the gradient into the previous state); the weight gradients are each one
matmul over all steps at the end. Works in the dtype of x (float32, or float64 for gradient checks).
"""
import numpy as np

from tlkit.engine.kernels import gru_reset_before
from tlkit.engine.kernels import recurrent_cells as cells
from tlkit.utils.threads import limit_blas

GATES = {"lstm": 4, "gru": 3, "gru_reset_before": 3, "simple": 1}


class Sequence:
    """What the forward pass keeps for backward, and its results."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _code(name, cell):
    code = cells.ACTIVATION_CODES.get(name)
    if code is None:
        raise ValueError(f"{cell.upper()} supports activations {sorted(cells.ACTIVATION_CODES)} in its fused "
                         f"kernel, got {name!r}; pick one of those.")
    return code


def rnn_forward(cell, x_tm, kernel, recurrent_kernel, bias, recurrent_bias, h0, c0, mask_tm, activation,
                recurrent_activation="sigmoid", recurrent_dropout=None):
    """Run the sequence. ``recurrent_dropout`` is a (B, units) multiplier applied to the state before the
    recurrent product (Keras: one mask for all steps), or None."""
    t_len, n, n_in = x_tm.shape
    units = recurrent_kernel.shape[0]
    dt = x_tm.dtype
    act, ract = _code(activation, cell), _code(recurrent_activation, cell)
    xw = (x_tm.reshape(t_len * n, n_in) @ kernel).reshape(t_len, n, -1)
    if bias is not None:
        xw += bias
    m = np.ones((t_len, n), np.uint8) if mask_tm is None else np.ascontiguousarray(mask_tm, dtype=np.uint8)
    h = np.empty((t_len + 1, n, units), dt)
    h[0] = h0
    out = np.empty((t_len, n, units), dt)
    zero_out = np.zeros((n, units), dt)
    gates = np.empty((t_len, n, GATES[cell] * units), dt) if cell != "simple" else None
    c = hr = rh = None
    if cell == "gru_reset_before":
        rh = np.empty((t_len, n, units), dt)
        limit_blas()
        gru_reset_before.forward_steps(xw, recurrent_kernel, h, out, zero_out, gates, rh, m, act, ract,
                                       recurrent_dropout)
    elif cell == "lstm":
        c = np.empty((t_len + 1, n, units), dt)
        c[0] = c0
    elif cell == "gru":
        hr = np.empty((t_len, n, units), dt)
        rb = np.zeros(3 * units, dt) if recurrent_bias is None else recurrent_bias
    rec = np.empty((n, GATES[cell] * units), dt)
    if cell != "gru_reset_before":
        limit_blas()  # per-step products are small: BLAS threads would cost more than they give
        _forward_steps(cell, xw, recurrent_kernel, rb if cell == "gru" else None, h, c, out, zero_out, gates, hr, m,
                       act, ract, rec, recurrent_dropout)
    return Sequence(cell=cell, x=x_tm, kernel=kernel, recurrent_kernel=recurrent_kernel, m=m, h=h, c=c, out=out,
                    gates=gates, hr=hr, rh=rh, act=act, ract=ract, recurrent_dropout=recurrent_dropout,
                    has_bias=bias is not None, has_recurrent_bias=recurrent_bias is not None)


def _forward_steps(cell, xw, recurrent_kernel, rb, h, c, out, zero_out, gates, hr, m, act, ract, rec,
                   recurrent_dropout):
    for t in range(xw.shape[0]):
        hp = h[t] if recurrent_dropout is None else h[t] * recurrent_dropout
        np.matmul(hp, recurrent_kernel, out=rec)
        prev_out = out[t - 1] if t else zero_out
        if cell == "lstm":
            cells.lstm_step_forward(xw[t], rec, c[t], h[t], prev_out, m[t], act, ract, gates[t], c[t + 1], h[t + 1],
                                    out[t])
        elif cell == "gru":
            cells.gru_step_forward(xw[t], rec, rb, h[t], prev_out, m[t], act, ract, gates[t], hr[t], h[t + 1], out[t])
        else:
            cells.simple_step_forward(xw[t], rec, h[t], prev_out, m[t], act, h[t + 1], out[t])


def rnn_backward(seq, d_out=None, d_last=None, d_h=None, d_c=None):
    """Gradients {x, kernel, recurrent_kernel, bias, recurrent_bias, h0, c0} given the gradient of the
    output sequence ``d_out`` (T, B, units), of the last output ``d_last`` and of the final states."""
    t_len, n, units = seq.out.shape
    dt = seq.out.dtype
    zeros = np.zeros((n, units), dt)
    carry_o = zeros.copy() if d_last is None else np.array(d_last, dt)
    carry_h = zeros.copy() if d_h is None else np.array(d_h, dt)
    carry_c = zeros.copy() if d_c is None else np.array(d_c, dt)
    g = GATES[seq.cell] * units
    dzx = np.empty((t_len, n, g), dt)
    dzr = np.empty((t_len, n, g), dt) if seq.cell == "gru" else dzx
    rkt = np.ascontiguousarray(seq.recurrent_kernel.T)
    back = np.empty((n, units), dt)
    limit_blas()  # as in rnn_forward
    if seq.cell == "gru_reset_before":
        gru_reset_before.backward_steps(seq, d_out, zeros, carry_o, carry_h, dzx)
    else:
        _backward_steps(seq, d_out, zeros, carry_o, carry_h, carry_c, dzx, dzr, rkt, back)
    x2 = seq.x.reshape(t_len * n, -1)
    dzx2, dzr2 = dzx.reshape(t_len * n, g), dzr.reshape(t_len * n, g)
    rd = seq.recurrent_dropout
    h_prev = seq.h[:-1] if rd is None else seq.h[:-1] * rd
    grads = {
        "x": (dzx2 @ seq.kernel.T).reshape(seq.x.shape),
        "kernel": x2.T @ dzx2,
        "recurrent_kernel": gru_reset_before.recurrent_kernel_grad(seq, dzx) if seq.cell == "gru_reset_before"
        else h_prev.reshape(t_len * n, units).T @ dzr2,
        "bias": dzx2.sum(axis=0) if seq.has_bias else None,
        "recurrent_bias": dzr2.sum(axis=0) if seq.has_recurrent_bias else None,
        "h0": carry_h,
        "c0": carry_c if seq.cell == "lstm" else None,
    }
    return grads


def _backward_steps(seq, d_out, zeros, carry_o, carry_h, carry_c, dzx, dzr, rkt, back):
    for t in range(seq.out.shape[0] - 1, -1, -1):
        dout = zeros if d_out is None else d_out[t]
        if seq.cell == "lstm":
            cells.lstm_step_backward(dout, carry_o, carry_h, carry_c, seq.gates[t], seq.c[t + 1], seq.c[t], seq.m[t],
                                     seq.act, seq.ract, dzx[t])
        elif seq.cell == "gru":
            cells.gru_step_backward(dout, carry_o, carry_h, seq.gates[t], seq.hr[t], seq.h[t], seq.m[t], seq.act,
                                    seq.ract, dzx[t], dzr[t])
        else:
            cells.simple_step_backward(dout, carry_o, carry_h, seq.h[t + 1], seq.m[t], seq.act, dzx[t])
        np.matmul(dzr[t], rkt, out=back)
        if seq.recurrent_dropout is not None:
            back *= seq.recurrent_dropout
        carry_h += back
