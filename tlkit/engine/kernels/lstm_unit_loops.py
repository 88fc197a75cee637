"""An LSTM's time loop over one block of units [lo, hi) for the whole batch, forward and backward, as one
numba call per thread with no return to Python between steps (lstm_units.py drives the threads).

Gate columns are in the "unit-block" order: the block [lo, hi) owns the contiguous columns [4lo, 4hi) of
every gate sequence, laid out i, f, c, o (Keras's order) over its w = hi - lo units. So a thread reads and
writes its own slice of each C-contiguous row (slices of a row stay typed 'C': the gate maths of
recurrent_cells.py vectorize), and its slice of the recurrent kernel is one contiguous array that stays
in its core's cache. Each step's product is numba's ``np.dot`` (scipy's BLAS).

The threads meet once a step: a step's product needs the whole state (forward) or the whole gate
gradient (backward) of the step before, half of it written by the other thread. Each thread publishes
how many steps it has finished in its own slot of an int64 array (``FLAG_STRIDE`` apart: one cache line
each) with a release store; the other reads it with acquire loads, so every write made before a store is
seen by a reader who sees the store. A wait spins at most ``spins`` reads, then the loop returns the step
it stopped at, so that the caller can yield its core and call again from that step.
"""
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from tlkit.engine.kernels.recurrent_cells import lstm_row_backward, lstm_row_forward

# int64 slots between two threads' flags: 128 bytes, so they never share a cache line.
FLAG_STRIDE = 16


@intrinsic
def _load_acquire(typingctx, flags, i):
    sig = types.int64(flags, i)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], arr, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def _store_release(typingctx, flags, i, value):
    sig = types.void(flags, i, value)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], arr, [args[1]])
        builder.store_atomic(context.cast(builder, args[2], signature.args[2], types.int64), ptr, "release", 8)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _others_reached(flags, slot, count, spins):
    """True once every thread but ``slot`` has finished ``count`` steps; False after ``spins`` reads of a
    flag that had not."""
    for other in range(flags.size // FLAG_STRIDE):
        if other == slot:
            continue
        for _ in range(spins):
            if _load_acquire(flags, other * FLAG_STRIDE) >= count:
                break
        else:
            return False
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def forward_loop(gates, block, bias, h, c, out, m, zero_out, act, ract, rec, lo, hi, flags, slot, start, spins):
    """Steps start.. of the units lo:hi. ``gates`` (T, B, 4u, unit-block order) holds the input projection
    and becomes the activated gates; ``block`` (u, 4w): the recurrent kernel's columns of these units;
    ``bias`` (4w); h, c (T+1, B, u) hold the initial states in [0]; rec (B, 4w): scratch. Returns T when
    done, else the step whose inputs did not come within ``spins`` reads (call again from there)."""
    t_len = gates.shape[0]
    w = hi - lo
    for t in range(start, t_len):
        if t > 0 and not _others_reached(flags, slot, t, spins):
            return t
        np.dot(h[t], block, rec)
        prev_out = out[t - 1] if t > 0 else zero_out
        for b in range(h.shape[1]):
            zb = gates[t][b][4 * lo:4 * hi]
            if m[t, b] == 0:  # a masked sample keeps its state and repeats its output
                c[t + 1][b][lo:hi] = c[t][b][lo:hi]
                h[t + 1][b][lo:hi] = h[t][b][lo:hi]
                out[t][b][lo:hi] = prev_out[b][lo:hi]
                zb[:] = 0.0
                continue
            lstm_row_forward(zb, rec[b], bias, c[t][b][lo:hi], zb, c[t + 1][b][lo:hi], h[t + 1][b][lo:hi],
                             out[t][b][lo:hi], act, ract, w, w)
        _store_release(flags, slot * FLAG_STRIDE, t + 1)
    return t_len


@njit(cache=True, nogil=True, error_model="numpy")
def backward_loop(d_out, has_d_out, carry_o, carry_h, carry_c, gates, c, m, act, ract, dz, block_t, back, lo, hi,
                  flags, slot, start, spins):
    """Backward through time for the units lo:hi: ``dz`` (T, B, 4u) gets their gate gradients (unit-block
    order); the carries (B, u) of output, h and c end, in these units' columns, as the gradients into the
    initial states (carry_h's including the recurrent path). ``block_t`` (4u, w): the transposed rows of
    the recurrent kernel of these units, unit-block order; back (B, w): scratch. ``d_out`` is the output
    sequence's gradient when ``has_d_out``, else zeros (1, B, u). Step s (0..T) is the s-th from the end:
    its product takes the gate gradients of the step after it, all threads' (s = T: the product into the
    initial state only). Returns T + 1 when done, else the step to call again from, as ``forward_loop``."""
    t_len = gates.shape[0]
    n = carry_h.shape[0]
    for s in range(start, t_len + 1):
        t = t_len - 1 - s
        if s > 0:
            if not _others_reached(flags, slot, s, spins):
                return s
            np.dot(dz[t + 1], block_t, back)
            for b in range(n):
                chb, bk = carry_h[b][lo:hi], back[b]
                for j in range(hi - lo):
                    chb[j] += bk[j]
        if s == t_len:
            break
        dout = d_out[t] if has_d_out else d_out[0]
        for b in range(n):
            dzb = dz[t][b][4 * lo:4 * hi]
            if m[t, b] == 0:  # a masked step repeats the previous output: its gradient goes to the step before
                cob, db = carry_o[b][lo:hi], dout[b][lo:hi]
                for j in range(hi - lo):
                    cob[j] += db[j]
                dzb[:] = 0.0
                continue
            lstm_row_backward(dout[b][lo:hi], carry_o[b][lo:hi], carry_h[b][lo:hi], carry_c[b][lo:hi],
                              gates[t][b][4 * lo:4 * hi], c[t + 1][b][lo:hi], c[t][b][lo:hi], act, ract, dzb)
        _store_release(flags, slot * FLAG_STRIDE, s + 1)
    return t_len + 1
