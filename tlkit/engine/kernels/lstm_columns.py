"""LSTM gate maths of one time step over a block of units [lo, hi) for the whole batch, forward and
backward, and the flags two threads use to wait for each other between steps (lstm_split.py drives them).

The gate columns are in the "unit-block" order: the block of units [lo, hi) owns the contiguous columns
[4*lo, 4*hi) of the gates, laid out i, f, c, o (Keras's order) over its hi - lo units each. A thread then
reads and writes only its own columns of every sequence, and its slice of the recurrent kernel is one
contiguous (units, 4*(hi - lo)) array. ``lstm_split.gate_permutation`` maps this order to Keras's.

Flags: each thread stores how many steps it has finished into its own slot of an int64 array
(``FLAG_STRIDE`` apart: one cache line each) with release ordering; the other reads it with acquire
ordering, so every write made before a store is seen by a reader who sees the store. ``wait_for`` spins
a bounded number of times and returns False to let the caller yield its core.
"""
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from tlkit.engine.kernels.recurrent_cells import _act_grad, _act_range

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


@njit(cache=True, nogil=True)
def signal(flags, slot, count):
    """Publish that thread ``slot`` has finished ``count`` steps (all its earlier writes with it)."""
    _store_release(flags, slot * FLAG_STRIDE, count)


@njit(cache=True, nogil=True)
def wait_for(flags, slot, count, spins):
    """True once every thread but ``slot`` has finished ``count`` steps; False after ``spins`` reads of a
    flag without it (the caller then yields its core and calls again)."""
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
def forward_step(gates, rec, bias, c_prev, h_prev, out_prev, m, act, ract, c, h, out, lo, hi, flags, slot, count, spins):
    """gates[:, 4lo:4hi] (holding the input projection) become the activated gates of units lo:hi, from
    rec (B, 4(hi-lo)), the block's recurrent product, and bias (unit-block order); then c, h, out of
    those units; then ``signal(flags, slot, count)`` and ``wait_for(flags, slot, count, spins)``, whose
    answer it returns (one call a step: every return to Python may wait for the other thread's GIL). A masked sample keeps its state, repeats its output."""
    w = hi - lo
    base = 4 * lo
    for b in range(h.shape[0]):
        zb = gates[b][base:base + 4 * w]
        cb, hb, ob = c[b][lo:hi], h[b][lo:hi], out[b][lo:hi]
        if m[b] == 0:
            cb[:] = c_prev[b][lo:hi]
            hb[:] = h_prev[b][lo:hi]
            ob[:] = out_prev[b][lo:hi]
            zb[:] = 0.0
            continue
        rb, bb, cpb = rec[b], bias[base:base + 4 * w], c_prev[b][lo:hi]
        for k in range(4 * w):
            zb[k] = zb[k] + rb[k] + bb[k]
        _act_range(ract, zb, 0, 2 * w)
        _act_range(act, zb, 2 * w, 3 * w)
        _act_range(ract, zb, 3 * w, 4 * w)
        for j in range(w):
            cb[j] = zb[w + j] * cpb[j] + zb[j] * zb[2 * w + j]
            hb[j] = cb[j]
        _act_range(act, hb, 0, w)
        for j in range(w):
            hb[j] = zb[3 * w + j] * hb[j]
            ob[j] = hb[j]
    signal(flags, slot, count)
    return wait_for(flags, slot, count, spins)


@njit(cache=True, nogil=True, error_model="numpy")
def backward_step(dout, back, carry_o, carry_h, carry_c, gates, c, c_prev, m, act, ract, dz, lo, hi, flags, slot,
                  count, spins):
    """dz[:, 4lo:4hi] (pre-activation gate gradients of units lo:hi, unit-block order) of one step, given
    ``back`` (B, hi-lo): the later step's dz @ R.T for these units, added to carry_h first. The carried
    gradients of output, h and c are updated for these units; carry_h is left as the part that does not
    pass through the recurrent kernel. Then ``signal`` and ``wait_for`` as ``forward_step``."""
    w = hi - lo
    base = 4 * lo
    for b in range(carry_h.shape[0]):
        dzb = dz[b][base:base + 4 * w]
        cob, chb, ccb, db = carry_o[b][lo:hi], carry_h[b][lo:hi], carry_c[b][lo:hi], dout[b][lo:hi]
        bk = back[b]
        for j in range(w):
            chb[j] += bk[j]
        if m[b] == 0:  # a masked step repeats the previous output: its gradient goes on to the step before
            for j in range(w):
                cob[j] += db[j]
            dzb[:] = 0.0
            continue
        zb, cn, cp = gates[b][base:base + 4 * w], c[b][lo:hi], c_prev[b][lo:hi]
        for j in range(w):  # act(c) first, in the o slot of dz, in one loop that vectorizes
            dzb[3 * w + j] = cn[j]
        _act_range(act, dzb, 3 * w, 4 * w)
        if act == 1 and ract == 2:  # Keras's default tanh and sigmoid: derivatives inline, a loop that vectorizes
            for j in range(w):
                dh = chb[j] + cob[j] + db[j]
                i, f, g, o, ac = zb[j], zb[w + j], zb[2 * w + j], zb[3 * w + j], dzb[3 * w + j]
                dc = ccb[j] + dh * o * (1.0 - ac * ac)
                dzb[j] = dc * g * (i * (1.0 - i))
                dzb[w + j] = dc * cp[j] * (f * (1.0 - f))
                dzb[2 * w + j] = dc * i * (1.0 - g * g)
                dzb[3 * w + j] = dh * ac * (o * (1.0 - o))
                ccb[j] = dc * f
                chb[j] = 0.0
                cob[j] = 0.0
            continue
        for j in range(w):
            dh = chb[j] + cob[j] + db[j]
            i, f, g, o, ac = zb[j], zb[w + j], zb[2 * w + j], zb[3 * w + j], dzb[3 * w + j]
            dc = ccb[j] + dh * o * _act_grad(act, ac)
            dzb[j] = dc * g * _act_grad(ract, i)
            dzb[w + j] = dc * cp[j] * _act_grad(ract, f)
            dzb[2 * w + j] = dc * i * _act_grad(act, g)
            dzb[3 * w + j] = dh * ac * _act_grad(ract, o)
            ccb[j] = dc * f
            chb[j] = 0.0
            cob[j] = 0.0
    signal(flags, slot, count)
    return wait_for(flags, slot, count, spins)
