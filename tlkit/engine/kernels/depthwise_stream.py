"""Output rows written around the caches, for depthwise outputs larger than the caches hold:

    if streams(y):
        copy_out(stage, start, y.reshape(-1), at, count, phase)   # after a kernel summed a row into stage
        ...
        store_fence()                                              # before the job ends

A plain store to a line not in cache first reads the line from memory (the core must own it before it
writes part of it), so an output written with plain stores costs its bytes twice in memory traffic.
Non-temporal 64-byte stores of whole lines go to memory through write-combining buffers without that
read: at batch 32 the depthwise kernels with every output row staged in a scratch row (in cache) and
copied out this way ran at nearly their in-cache speed, while the plain stores left them a fifth to a
third slower. The lines bypass the caches, so only outputs too large to stay in them take this way
(the next layer reads them from memory either way).

On CPUs that run AVX-512 at full width (host_cpu.full_width: Intel Xeon, 2 MB of L2 a core and a large
shared L3) plain stores measured faster at every size tried, 9 to 147 MB of output (1.2-1.45x: the lines
stay in the L3, where the next layer finds them), so outputs stream only on the other CPUs (Zen 4).
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from tlkit.engine.kernels.host_cpu import full_width

__all__ = ["copy_out", "store_fence", "streams", "STREAM_MIN_BYTES"]

# Outputs from this size on are streamed: well past a core's L2 (1-2 MB) and a large share of an L3
# that other processes share, so the rows would leave the caches before the next layer reads them.
STREAM_MIN_BYTES = 8 << 20
LINE_FLOATS = 16  # floats per 64-byte cache line


def streams(y):
    """Whether output y is written with non-temporal stores: not on a full-width AVX-512 CPU, large, and
    its floats 4-byte aligned (so whole cache lines of them start at a float; a misaligned streaming
    store would fault)."""
    return not full_width() and y.nbytes >= STREAM_MIN_BYTES and y.ctypes.data % 4 == 0


@intrinsic
def _stream_line(typingctx, dst, di, src, si):
    """dst[di:di + 16] = src[si:si + 16] by one non-temporal 64-byte store (&dst[di] 64-byte aligned;
    LLVM splits it into 32- or 16-byte ones on CPUs without 64-byte vectors)."""
    def codegen(context, builder, signature, args):
        dst_type, src_type = signature.args[0], signature.args[2]
        d = context.make_array(dst_type)(context, builder, args[0])
        s = context.make_array(src_type)(context, builder, args[2])
        dp = cgutils.get_item_pointer(context, builder, dst_type, d, [args[1]], wraparound=False)
        sp = cgutils.get_item_pointer(context, builder, src_type, s, [args[3]], wraparound=False)
        line = ir.VectorType(ir.FloatType(), LINE_FLOATS)
        value = builder.load(builder.bitcast(sp, line.as_pointer()), align=4)
        store = builder.store(value, builder.bitcast(dp, line.as_pointer()), align=64)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))
        return context.get_dummy_value()
    return types.void(dst, di, src, si), codegen


@intrinsic
def _fence(typingctx):
    """A full memory fence: the non-temporal stores before it are visible to other cores after it."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.void(), codegen


@njit(cache=True, nogil=True)
def copy_out(stage, start, yf, at, count, phase):
    """yf[at:at + count] = stage[start:start + count], whole cache lines by non-temporal stores, the
    partial lines at either end by plain ones. phase: yf's first float's place in its cache line
    ((address // 4) % 16). (A function of its own: inlined into a kernel's loop, LLVM left that
    kernel's passes scalar.)"""
    head = min((LINE_FLOATS - (at + phase) % LINE_FLOATS) % LINE_FLOATS, count)
    for e in range(head):
        yf[at + e] = stage[start + e]
    e = head
    while e + LINE_FLOATS <= count:
        _stream_line(yf, np.uint64(at + e), stage, np.uint64(start + e))
        e += LINE_FLOATS
    for i in range(e, count):
        yf[at + i] = stage[start + i]


@njit(cache=True, nogil=True)
def store_fence():
    """Orders a job's non-temporal stores before whatever reads the output next."""
    _fence()
