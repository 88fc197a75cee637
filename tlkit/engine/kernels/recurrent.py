"""Forward and backward through time for LSTM, GRU (reset_after, and reset before: gru_reset_before.py)
and SimpleRNN.

    seq = rnn_forward("lstm", x_tm, W, R, b_in, None, h0, c0, mask_tm, "tanh", "sigmoid")
    grads = rnn_backward(seq, d_out_tm, d_last, d_h, d_c)

Arrays are time-major: x_tm (T, B, in), outputs (T, B, units), mask_tm (T, B) of 0/1. The input projection
of all steps (with the input bias) is one product split over the threads
(``recurrent_products.sequence_product``), written into the gates' array, which each step turns into its
gates in place. The time loop runs on blocks of the batch, one thread each (``batch_blocks``): samples
never mix in a recurrent layer, so each block does its whole loop alone, with no hand-off between steps.
Each step does one product of the block's state with the recurrent kernel (recurrent_products.py: packed
once a pass) and one fused kernel for the gate maths (recurrent_cells.py). Backward through time does the
same per block with one product per step (the gradient into the previous state); the weight gradients are
each one product over all steps at the end, cut along the steps (``threads.matmul_tn``). The large
internal sequences (gates, states, gate gradients) come from ``utils.workspace`` and go back to it when
the pass is done with them: fresh arrays of tens of MB cost their page faults on every call.
Works in the dtype of x (float32, or float64 for gradient checks).
"""
import numpy as np

from tlkit.engine.kernels import gru_reset_before
from tlkit.engine.kernels import recurrent_cells as cells
from tlkit.engine.kernels.recurrent_products import StepProduct, sequence_product, weight_grad_chunks
from tlkit.utils import threads, workspace

GATES = {"lstm": 4, "gru": 3, "gru_reset_before": 3, "simple": 1}
# Per-sample arrays of a Sequence, time-major (T[+1], B, ...), and the (B, units) recurrent dropout.
_TIME_MAJOR = ("h", "c", "out", "gates", "hr", "rh", "m")


class Sequence:
    """What the forward pass keeps for backward, and its results."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def rows(self, lo, hi):
        """The same sequence for samples lo:hi of the batch (views: writes reach the whole)."""
        part = Sequence(**self.__dict__)
        for name in _TIME_MAJOR:
            value = getattr(self, name)
            setattr(part, name, None if value is None else value[:, lo:hi])
        part.recurrent_dropout = None if self.recurrent_dropout is None else self.recurrent_dropout[lo:hi]
        return part


def transposed(a, band=16):
    """a.T as a C-contiguous array, written in strips of ``band`` columns: numpy's plain copy of a.T
    reads a's columns, whose elements a whole row apart (4 KB for 1024 float32) fall in the same few
    cache sets; a band of rows is read along them instead (~3x faster for a (256, 1024) kernel)."""
    out = np.empty(a.shape[::-1], a.dtype)
    for lo in range(0, a.shape[0], band):
        out[:, lo:lo + band] = a[lo:lo + band].T
    return out


def _code(name, cell):
    code = cells.ACTIVATION_CODES.get(name)
    if code is None:
        raise ValueError(f"{cell.upper()} supports activations {sorted(cells.ACTIVATION_CODES)} in its fused "
                         f"kernel, got {name!r}; pick one of those.")
    return code


def batch_blocks(n, step_flops, t_len, parts=None):
    """Bounds of the batch's blocks, one per thread. A block's hand-off costs ~50 us once per
    sequence, so a sequence under MIN_SPLIT_FLOPS of recurrent products stays on one thread.
    ``parts`` forces the number of blocks (tests), capped at one sample each."""
    if parts is None:
        parts = threads.num_threads() if step_flops * t_len >= threads.MIN_SPLIT_FLOPS else 1
    parts = max(1, min(int(parts), n))
    return np.linspace(0, n, parts + 1).astype(int)


def _over_blocks(bounds, work):
    """work(lo, hi) for each block of the batch, each block on its own thread. The cell kernels are
    plain (not parallel) numba and release the GIL, so several threads may run them at once whatever
    numba's threading layer is; BLAS is on one thread per caller (``limit_blas``)."""
    threads.limit_blas()
    if len(bounds) == 2:
        work(bounds[0], bounds[1])
    else:
        threads.run_chunks(bounds, lambda slot, lo, hi: work(lo, hi), len(bounds) - 1)


def rnn_forward(cell, x_tm, kernel, recurrent_kernel, bias, recurrent_bias, h0, c0, mask_tm, activation,
                recurrent_activation="sigmoid", recurrent_dropout=None, parts=None):
    """Run the sequence. ``recurrent_dropout`` is a (B, units) multiplier applied to the state before the
    recurrent product (Keras: one mask for all steps), or None. ``parts``: see ``batch_blocks``."""
    t_len, n, n_in = x_tm.shape
    units = recurrent_kernel.shape[0]
    g = GATES[cell] * units
    dt = x_tm.dtype
    act, ract = _code(activation, cell), _code(recurrent_activation, cell)
    kernel, recurrent_kernel = np.asarray(kernel, dt), np.asarray(recurrent_kernel, dt)  # products write into dt
    # The input projection, which each step turns into its gates in place.
    gates = workspace.take((t_len, n, g), dt)
    b_in = np.zeros(g, dt) if bias is None else np.asarray(bias, dt)
    if sequence_product(x_tm.reshape(t_len * n, n_in), kernel, gates.reshape(t_len * n, g), b_in):
        b_in = np.zeros(g, dt)  # in the projection already; else the gate kernels add it
    m = np.ones((t_len, n), np.uint8) if mask_tm is None else np.ascontiguousarray(mask_tm, dtype=np.uint8)
    h = workspace.take((t_len + 1, n, units), dt)
    h[0] = h0
    out = np.empty((t_len, n, units), dt)
    zero_out = np.zeros((n, units), dt)
    c = hr = rh = rb = None
    if cell == "gru_reset_before":
        rh = workspace.take((t_len, n, units), dt)
    elif cell == "lstm":
        c = workspace.take((t_len + 1, n, units), dt)
        c[0] = c0
    elif cell == "gru":
        hr = workspace.take((t_len, n, units), dt)
        rb = np.zeros(g, dt) if recurrent_bias is None else recurrent_bias
    seq = Sequence(cell=cell, x=x_tm, kernel=kernel, recurrent_kernel=recurrent_kernel, m=m, h=h, c=c, out=out,
                   gates=gates, hr=hr, rh=rh, act=act, ract=ract, recurrent_dropout=recurrent_dropout,
                   has_bias=bias is not None, has_recurrent_bias=recurrent_bias is not None)

    bounds = batch_blocks(n, 2 * n * units * g, t_len, parts)
    product = None if cell == "gru_reset_before" else StepProduct(recurrent_kernel, np.diff(bounds).max())

    def block(lo, hi):
        part = seq.rows(lo, hi)
        if cell == "gru_reset_before":
            gru_reset_before.forward_steps(part.gates, recurrent_kernel, b_in, part.h, part.out, zero_out[lo:hi],
                                           part.gates, part.rh, part.m, act, ract, part.recurrent_dropout)
        else:
            _forward_steps(cell, part.gates, product, b_in, rb, part, zero_out[lo:hi], np.empty((hi - lo, g), dt))

    _over_blocks(bounds, block)
    workspace.give_back_when_dead(seq, [a for a in (gates, h, c, hr, rh) if a is not None])
    return seq


def _forward_steps(cell, xw, product, bias, rb, seq, zero_out, rec):
    """``xw``: the steps' input projections, which may be ``seq.gates`` itself (gates made in place);
    ``product``: the recurrent kernel's StepProduct."""
    h, c, out, gates, hr, m, act, ract, rd = (seq.h, seq.c, seq.out, seq.gates, seq.hr, seq.m, seq.act, seq.ract,
                                              seq.recurrent_dropout)
    for t in range(xw.shape[0]):
        hp = h[t] if rd is None else h[t] * rd
        product(hp, rec)
        prev_out = out[t - 1] if t else zero_out
        if cell == "lstm":
            cells.lstm_step_forward(xw[t], rec, bias, c[t], h[t], prev_out, m[t], act, ract, gates[t], c[t + 1],
                                    h[t + 1], out[t])
        elif cell == "gru":
            cells.gru_step_forward(xw[t], rec, bias, rb, h[t], prev_out, m[t], act, ract, gates[t], hr[t], h[t + 1],
                                   out[t])
        else:
            cells.simple_step_forward(xw[t], rec, bias, h[t], prev_out, m[t], act, h[t + 1], out[t])


def rnn_backward(seq, d_out=None, d_last=None, d_h=None, d_c=None, parts=None):
    """Gradients {x, kernel, recurrent_kernel, bias, recurrent_bias, h0, c0} given the gradient of the
    output sequence ``d_out`` (T, B, units), of the last output ``d_last`` and of the final states.
    ``parts``: see ``batch_blocks``."""
    t_len, n, units = seq.out.shape
    dt = seq.out.dtype
    zeros = np.zeros((n, units), dt)
    carry_o = zeros.copy() if d_last is None else np.array(d_last, dt)
    carry_h = zeros.copy() if d_h is None else np.array(d_h, dt)
    carry_c = zeros.copy() if d_c is None else np.array(d_c, dt)
    g = GATES[seq.cell] * units
    dzx = workspace.take((t_len, n, g), dt)
    dzr = workspace.take((t_len, n, g), dt) if seq.cell == "gru" else dzx
    bounds = batch_blocks(n, 2 * n * units * g, t_len, parts)
    r_t = None if seq.cell == "gru_reset_before" else StepProduct(transposed(seq.recurrent_kernel),
                                                                  np.diff(bounds).max())

    def block(lo, hi):
        part = seq.rows(lo, hi)
        d_part = None if d_out is None else d_out[:, lo:hi]
        if seq.cell == "gru_reset_before":
            gru_reset_before.backward_steps(part, d_part, zeros[lo:hi], carry_o[lo:hi], carry_h[lo:hi], dzx[:, lo:hi])
        else:
            _backward_steps(part, d_part, zeros[lo:hi], carry_o[lo:hi], carry_h[lo:hi], carry_c[lo:hi],
                            dzx[:, lo:hi], dzr[:, lo:hi], r_t, np.empty((hi - lo, units), dt))

    _over_blocks(bounds, block)
    x2 = seq.x.reshape(t_len * n, -1)
    dzx2, dzr2 = dzx.reshape(t_len * n, g), dzr.reshape(t_len * n, g)
    rd = seq.recurrent_dropout
    h_prev = seq.h[:-1] if rd is None else seq.h[:-1] * rd
    dx = np.empty(x2.shape, dt)
    sequence_product(dzx2, seq.kernel.T, dx)
    # the bias gradients (column sums of the gate gradients) summed by the weight gradients' products
    d_bias = np.empty(g, dt) if seq.has_bias else None
    d_rbias = np.empty(g, dt) if seq.has_recurrent_bias else None
    if seq.cell == "gru_reset_before":
        d_recurrent = gru_reset_before.recurrent_kernel_grad(seq, dzx)
        if d_rbias is not None:
            np.sum(dzr2, axis=0, out=d_rbias)
    else:
        d_recurrent = threads.matmul_tn(h_prev.reshape(t_len * n, units), dzr2, np.empty((units, g), dt), d_rbias,
                                       weight_grad_chunks())
    grads = {
        "x": dx.reshape(seq.x.shape),
        "kernel": threads.matmul_tn(x2, dzx2, np.empty((x2.shape[1], g), dt), d_bias, weight_grad_chunks()),
        "recurrent_kernel": d_recurrent,
        "bias": d_bias,
        "recurrent_bias": d_rbias,
        "h0": carry_h,
        "c0": carry_c if seq.cell == "lstm" else None,
    }
    del dzx2, dzr2
    workspace.give_back([dzx] + ([dzr] if dzr is not dzx else []))
    return grads


def _backward_steps(seq, d_out, zeros, carry_o, carry_h, carry_c, dzx, dzr, r_t, back):
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
        if seq.recurrent_dropout is None:
            r_t.add(dzr[t], carry_h, back)
        else:
            r_t(dzr[t], back)
            back *= seq.recurrent_dropout
            carry_h += back
