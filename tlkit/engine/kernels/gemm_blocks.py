"""Thin products (a 1x1 conv's: many rows, few input or output channels) with the bias, a residual and
a clip fused, through a register-blocked micro-kernel written in LLVM IR.

    packed = pack(w, bias)                         # once per layer: w (K, F), bias (F,) or None
    product_epilogue(x2, packed, y2, residual2, lo, hi)  # y2 = clip(x2 @ w + bias + residual2, lo, hi)

x2 (M, K) and y2 (M, F) 2-D float32 with unit column stride (y2 may be a column slice of a wider
array); residual2 (M, F) or None; lo / hi float32 bounds (-inf / inf: none).

Why IR: numba kernels written as loops ran these products at a third to a half of OpenBLAS's speed, as
LLVM kept neither the sums nor the broadcast inputs in registers (BENCHMARKS.md, "Products"). Here
the micro-kernel's MR x NV accumulators are LLVM vector values carried by phi nodes over the loop on
K: per k, NV vector loads of the packed weight row and one broadcast input value per row, MR * NV
vector FMAs; then the bias, residual and clip on the sums and one store per vector. Nothing is left
for LLVM to spill or re-vectorize. Weights are packed once into panels of NR = NV * W columns (zero
padded), so each panel's rows are contiguous; the last panel's columns past F are masked out of the
residual's loads and the stores (llvm.masked.*). The lane width W follows the CPU (16 with AVX-512,
else 8), block shapes and row passes too (host_cpu.py: what the rules are keyed on, and why).
"""
import threading
import weakref

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from tlkit.engine.kernels.depthwise_tiles import _prefetch
from tlkit.engine.kernels.host_cpu import full_width, lanes

__all__ = ["Packed", "block_shape", "lanes", "pack", "product_epilogue", "speed", "worth_it"]

# False sends every product back to BLAS + the epilogue pass (A/B measurements).
ENABLED = True
# The deepest products routed here (measured up to ResNet50's K = 2048).
LIMIT_K = 2048
# llvm.prefetch is named after its pointer type: typed pointers before LLVM 15, opaque ones since.
_PREFETCH = "llvm.prefetch.p0" if llvm.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"
# Floats of x prefetched ahead of the block being computed, at least (whole blocks of MR rows).
AHEAD_FLOATS = 1024
# Bytes of the rows of x one pass over the panels reads, by host_cpu.full_width: they stay in a core's L2
# cache while every panel of the weights runs over them, so each weight read serves ROWS_BYTES / 4K rows.
# 128 KB at half width (Zen 4, 1 MB L2). At full width (Intel Xeon, 2 MB L2), K >= 1536 ran at 105-130
# GFLOP/s with 128 KB, below BLAS's ~140, and at 158-172 with 512 KB; smaller K alike (BENCHMARKS.md).
ROWS_BYTES = {False: 128 << 10, True: 512 << 10}
# Weights larger than this, over fewer rows than columns (a batch-1 product of 7x7-14x14 pixels with
# K = 2048-4608: ResNet50's conv5 1x1 and 3x3 convs), run in one pass over all rows instead: each panel
# is read from memory once and stays in cache while every row block runs over it, where passes of
# ROWS_BYTES of rows read every panel again per pass (49 x 4608 x 512, one thread: 3.3 -> 2.2 ms).
# 0 turns it off (A/B measurements).
PANELS_FIRST_BYTES = 1 << 20
# Few rows (batch 1's 7x7-28x28 layers) make a product of weights read once, from L3 or memory: each
# panel's first pass over the rows prefetches the next panel, its lines spread over the blocks of rows,
# so they arrive while the blocks compute from L2 (False: none, A/B scripts; read when a driver is made).
NEXT_PANEL = True
LINE_FLOATS = 16  # floats per 64-byte cache line: one prefetch each


# Block shapes (MR rows, NV vectors) by lane width: MR * NV accumulators, as many as the registers hold
# beside the NV weight vectors and a broadcast (32 vector registers with AVX-512, 16 with AVX2), in the
# order preferred when several pad the columns as little: fewer rows first, as rows a multiple of 4 KB
# apart (K = 1024, 2048) share L1 cache sets (K = 1000-2048: 6 x 4 at ~108 GFLOP/s, 12 x 2 at ~88).
# With 8 lanes, 12 x 1 (one weight vector per 12 broadcasts) ran at 2/3 of 6 x 2's speed: 6 x 2 only.
SHAPES = {16: ((6, 4), (8, 3), (12, 2), (14, 1)), 8: ((6, 2),)}
# Relative speed of the 16-lane shapes where it differs from 1 (block_shape weighs the padded columns
# by it), by full_width. At half width (Zen 4) one FMA a cycle bounds them all alike (~108 GFLOP/s).
# At full width (Intel Xeon, scripts/bench_gemm_blocks.py --shapes widths --blocks ...): 14 x 1, one
# weight vector per 14 broadcasts, stays at 95-110 GFLOP/s where the others run 150-200, and 12 x 2 a
# little behind 6 x 4 and 8 x 3.
SPEEDS = {False: {}, True: {(12, 2): 0.9, (14, 1): 0.6}}


def speed(shape, w=None, cpu=None):
    """The relative speed of block shape (MR, NV) at lane width W on the CPU (see SPEEDS)."""
    w = lanes(cpu) if w is None else w
    return SPEEDS[w == 16 and full_width(cpu)].get(tuple(shape), 1.0)


def block_shape(k, f, w=None, cpu=None):
    """(MR rows, NV vectors of W lanes) of the micro-kernel for a (K, F) weight matrix: the shape of
    SHAPES[W] padding the F columns to the fewest panel columns, weighed by its speed (SPEEDS), the
    first in SHAPES' order among equals."""
    w = lanes(cpu) if w is None else w
    shapes = SHAPES[w]
    return min(shapes, key=lambda s: (-(-f // (s[1] * w)) * s[1] / speed(s, w, cpu), shapes.index(s)))


def _vector_type(w):
    return ir.VectorType(ir.FloatType(), w)


def _splat(builder, value, w):
    """<w x float> with every lane = value (insertelement + shufflevector: one broadcast)."""
    vec = _vector_type(w)
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), w), [0] * w))


def _splat_int(builder, value, w):
    """<w x iN> with every lane = value."""
    vec = ir.VectorType(value.type, w)
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), w), [0] * w))


def _row_pointer(context, builder, array_type, array, row, column):
    """float* to array[row, column] of a 2-D array with unit column stride."""
    ary = context.make_array(array_type)(context, builder, array)
    row_stride = builder.ashr(cgutils.unpack_tuple(builder, ary.strides, 2)[0], ir.Constant(row.type, 2))
    return builder.gep(ary.data, [builder.add(builder.mul(row, row_stride), column)])


def _literal(value):
    return value.literal_value if isinstance(value, types.Literal) else None


def _masked(name, w):
    """llvm.masked.load / llvm.masked.store of <w x float>, named after the pointer type (typed
    pointers before LLVM 15, opaque ones since)."""
    pointer = "p0" if llvm.llvm_version_info[0] >= 15 else f"p0v{w}f32"
    return f"llvm.masked.{name}.v{w}f32.{pointer}"


@intrinsic
def _micro(typingctx, x, row0, rows, ahead, panels, panel, cols, bias, y, res, lo, hi, mr, nv, w, has_res, masked):
    """y[row0 + r, c0 + j] = clip(sum_k x[row0 + r, k] * panels[panel, k, j] + bias[c0 + j]
    (+ res[row0 + r, c0 + j]), lo, hi) for r < rows (<= MR) and j < cols (<= NR = NV * W), with
    c0 = panel * NR: whole vectors, or (``masked``) the columns past ``cols`` neither read nor
    written. Rows past ``rows`` read row0 + rows - 1 again and are not stored. Meanwhile the MR
    rows from row0 + ahead on are prefetched, MR floats a step on k: the hardware prefetcher does not
    follow MR rows read a float at a time, and large inputs come from memory or L3."""
    shape = [_literal(v) for v in (mr, nv, w, has_res, masked)]
    if None in shape:
        return None  # the block's shape must be known when the kernel compiles
    mr_, nv_, w_, has_res_, masked_ = shape
    nr = nv_ * w_

    def codegen(context, builder, signature, args):
        ty = signature.args
        x_v, row0_v, rows_v, ahead_v, panels_v, panel_v, cols_v, bias_v, y_v, res_v, lo_v, hi_v = [
            context.cast(builder, v, t, types.intp) if isinstance(t, types.Integer) else v
            for v, t in zip(args[:12], ty[:12])]
        intp = context.get_value_type(types.intp)
        const = lambda n: ir.Constant(intp, n)  # noqa: E731
        vec = _vector_type(w_)
        vec_ptr = vec.as_pointer()
        fn = builder.function
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                                             f"llvm.fma.v{w_}f32")
        # the input row of each accumulator row (the last real row again past ``rows``)
        last = builder.sub(rows_v, const(1))
        zero = const(0)
        a_rows = [_row_pointer(context, builder, ty[0], x_v,
                               builder.add(row0_v, builder.select(builder.icmp_signed("<", const(r), last),
                                                                  const(r), last)), zero)
                  for r in range(mr_)]
        ahead_row = _row_pointer(context, builder, ty[0], x_v, builder.add(row0_v, ahead_v), zero)
        byte_ptr, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]), _PREFETCH)
        p_ary = context.make_array(ty[4])(context, builder, panels_v)
        depth = cgutils.unpack_tuple(builder, p_ary.shape, 3)[1]
        b_base = builder.gep(p_ary.data, [builder.mul(panel_v, builder.mul(depth, const(nr)))])

        entry = builder.block
        loop = fn.append_basic_block("gemm_blocks.k")
        done = fn.append_basic_block("gemm_blocks.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        k = builder.phi(intp)
        k.add_incoming(zero, entry)
        zeros = ir.Constant(vec, [0.0] * w_)
        accs = [[builder.phi(vec) for _ in range(nv_)] for _ in range(mr_)]
        for row in accs:
            for acc in row:
                acc.add_incoming(zeros, entry)
        # read, locality 3 (all caches: used a few blocks later), data
        builder.call(prefetch, [builder.bitcast(builder.gep(ahead_row, [builder.mul(k, const(mr_))]), byte_ptr),
                                i32(0), i32(3), i32(1)])
        b_row = builder.gep(b_base, [builder.mul(k, const(nr))])
        b_vecs = [builder.load(builder.bitcast(builder.gep(b_row, [const(v * w_)]), vec_ptr), align=4)
                  for v in range(nv_)]
        sums = []
        for r in range(mr_):
            a = _splat(builder, builder.load(builder.gep(a_rows[r], [k]), align=4), w_)
            sums.append([builder.call(fma, [a, b_vecs[v], accs[r][v]]) for v in range(nv_)])
        k_next = builder.add(k, const(1))
        k.add_incoming(k_next, builder.block)
        for r in range(mr_):
            for v in range(nv_):
                accs[r][v].add_incoming(sums[r][v], builder.block)
        builder.cbranch(builder.icmp_signed("<", k_next, depth), loop, done)

        builder.position_at_end(done)
        c0 = builder.mul(panel_v, const(nr))
        b_ary = context.make_array(ty[7])(context, builder, bias_v)
        bias_vecs = [builder.load(builder.bitcast(builder.gep(b_ary.data, [builder.add(c0, const(v * w_))]), vec_ptr),
                                  align=4) for v in range(nv_)]
        low, high = _splat(builder, lo_v, w_), _splat(builder, hi_v, w_)
        masks = None
        if masked_:  # lane j of vector v is column v * W + j: kept when below cols
            mask_type = ir.VectorType(ir.IntType(1), w_)
            store = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                ir.VoidType(), [vec, vec_ptr, i32, mask_type]), _masked("store", w_))
            load = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                vec, [vec_ptr, i32, mask_type, vec]), _masked("load", w_))
            lanes_ = ir.Constant(ir.VectorType(intp, w_), list(range(w_)))
            cols_splat = _splat_int(builder, cols_v, w_)
            masks = [builder.icmp_signed("<", builder.add(lanes_, _splat_int(builder, const(v * w_), w_)), cols_splat)
                     for v in range(nv_)]
        end = fn.append_basic_block("gemm_blocks.end")
        for r in range(mr_):
            y_ptr = _row_pointer(context, builder, ty[8], y_v, builder.add(row0_v, const(r)), c0)
            r_ptr = (_row_pointer(context, builder, ty[9], res_v, builder.add(row0_v, const(r)), c0)
                     if has_res_ else None)
            for v in range(nv_):
                val = builder.fadd(sums[r][v], bias_vecs[v])
                if has_res_:
                    r_vec = builder.bitcast(builder.gep(r_ptr, [const(v * w_)]), vec_ptr)
                    val = builder.fadd(val, builder.call(load, [r_vec, i32(4), masks[v], zeros]) if masked_
                                       else builder.load(r_vec, align=4))
                val = builder.select(builder.fcmp_ordered("<", val, low), low, val)
                val = builder.select(builder.fcmp_ordered(">", val, high), high, val)
                y_vec = builder.bitcast(builder.gep(y_ptr, [const(v * w_)]), vec_ptr)
                if masked_:
                    builder.call(store, [val, y_vec, i32(4), masks[v]])
                else:
                    builder.store(val, y_vec, align=4)
            if r + 1 < mr_:
                more = fn.append_basic_block(f"gemm_blocks.row{r + 1}")
                builder.cbranch(builder.icmp_signed("<", const(r + 1), rows_v), more, end)
                builder.position_at_end(more)
        builder.branch(end)
        builder.position_at_end(end)
        return context.get_dummy_value()

    sig = types.none(x, row0, rows, ahead, panels, panel, cols, bias, y, res, lo, hi, mr, nv, w, has_res, masked)
    return sig, codegen


_drivers = {}
_drivers_lock = threading.Lock()  # worker threads may ask for the same shape's driver at once


def _driver(mr, nv, w):
    """The numba kernel running one block shape over a whole product (compiled on first use, cached
    per shape: the shape is a compile-time constant of the micro-kernel)."""
    key = (mr, nv, w, PANELS_FIRST_BYTES, NEXT_PANEL)
    run = _drivers.get(key)
    if run is not None:
        return run
    with _drivers_lock:
        if key not in _drivers:
            _drivers[key] = _new_driver(mr, nv, w, PANELS_FIRST_BYTES, NEXT_PANEL)
        return _drivers[key]


def _new_driver(mr, nv, w, panels_first_bytes, next_panel):
    nr = nv * w  # nr, rows_bytes and the arguments are constants of the kernel: numba's cache keys on them
    rows_bytes = ROWS_BYTES[w == 16 and full_width()]

    @njit(cache=True, nogil=True)
    def run(x, panels, bias, y, res, has_res, lo, hi):
        m, k = x.shape
        f = y.shape[1]
        step = max(mr, rows_bytes // (4 * k) // mr * mr)
        if 0 < panels_first_bytes < 4 * k * f and m < f:
            step = m
        ahead = mr * -(-AHEAD_FLOATS // (mr * k))
        flat, panel_floats = panels.reshape(-1), k * nr
        for i0 in range(0, m, step):
            i1 = min(i0 + step, m)
            blocks = -(-(i1 - i0) // mr)
            for p in range(panels.shape[0]):
                cols = min(nr, f - p * nr)
                for i in range(i0, i1, mr):
                    rows = min(mr, i1 - i)
                    if next_panel and i0 == 0 and p + 1 < panels.shape[0]:
                        # the next panel's share for this block of rows, on the first pass over the rows
                        b = (i - i0) // mr
                        first = (p + 1) * panel_floats + panel_floats * b // blocks
                        last = (p + 1) * panel_floats + panel_floats * (b + 1) // blocks
                        for e in range(first - first % LINE_FLOATS, last, LINE_FLOATS):
                            _prefetch(flat, np.uint64(e))
                    if cols == nr and has_res:
                        _micro(x, i, rows, ahead, panels, p, cols, bias, y, res, lo, hi, mr, nv, w, True, False)
                    elif cols == nr:
                        _micro(x, i, rows, ahead, panels, p, cols, bias, y, res, lo, hi, mr, nv, w, False, False)
                    elif has_res:
                        _micro(x, i, rows, ahead, panels, p, cols, bias, y, res, lo, hi, mr, nv, w, True, True)
                    else:
                        _micro(x, i, rows, ahead, panels, p, cols, bias, y, res, lo, hi, mr, nv, w, False, True)

    return run


class Packed:
    """A 1x1 conv's weights (K, F) and bias packed for the micro-kernel: panels (P, K, NR) of NR
    columns each and the bias (P * NR,), zero padded; ``lanes_`` forces the vector width (8 or 16),
    ``shape`` the block shape (MR, NV)."""

    def __init__(self, w, bias=None, lanes_=None, shape=None):
        k, f = w.shape
        self.w = lanes() if lanes_ is None else lanes_
        self.mr, self.nv = block_shape(k, f, self.w) if shape is None else shape
        nr = self.nv * self.w
        count, whole = -(-f // nr), f // nr
        self.panels = np.empty((count, k, nr), np.float32)
        self.panels[:whole] = w[:, :whole * nr].reshape(k, whole, nr).transpose(1, 0, 2)
        if whole < count:
            self.panels[whole] = 0
            self.panels[whole, :, :f - whole * nr] = w[:, whole * nr:]
        self.bias = np.zeros(count * nr, np.float32)
        if bias is not None:
            self.bias[:f] = bias
        self.k, self.f = k, f


    def columns(self, p0, p1):
        """The packing of panels [p0, p1) alone: columns p0 * NR to min(F, p1 * NR), no copy."""
        part = object.__new__(Packed)
        part.__dict__.update(self.__dict__)
        nr = self.nv * self.w
        part.panels, part.bias = self.panels[p0:p1], self.bias[p0 * nr:p1 * nr]
        part.f = min(self.f, p1 * nr) - p0 * nr
        return part


def pack(w, bias=None, lanes_=None, shape=None):
    """Packed weights of a 1x1 conv: w (K, F), bias (F,) or None (see Packed)."""
    return Packed(np.asarray(w, np.float32), None if bias is None else np.asarray(bias, np.float32), lanes_,
                  shape)


# Packed weights of arrays no one writes to again (folded BatchNormalization weights), by identity;
# an entry goes when its arrays do.
_kept = {}


def _root(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def pack_kept(w, bias=None):
    """pack(w, bias), kept while w's and bias's arrays live: only for weights never written in place
    (a fold's results, replaced when a weight changes), never for a layer's own trainable weights."""
    roots = [_root(w)] + ([] if bias is None else [_root(bias)])
    key = (tuple(id(r) for r in roots), w.__array_interface__["data"][0], w.shape, w.strides,
           None if bias is None else (bias.__array_interface__["data"][0], bias.shape, bias.strides))
    kept = _kept.get(key)
    if kept is not None and all(ref() is r for ref, r in zip(kept[0], roots)):
        return kept[1]
    packed = pack(w, bias)
    _kept[key] = ([weakref.ref(r, lambda _, key=key: _kept.pop(key, None)) for r in roots], packed)
    return packed


def worth_it(k, f, w=None):
    """Whether a (K, F) product runs faster here than through BLAS + the epilogue pass (one thread,
    BENCHMARKS.md "Products"): with 16 lanes every one measured (K <= LIMIT_K; on Zen 4 and, with
    ROWS_BYTES' larger passes, on an Intel Xeon); with 8 lanes only the thin ones (K or F <= 48), as
    BLAS's AVX2 kernels match it on the others."""
    w = lanes() if w is None else w
    return ENABLED and k <= LIMIT_K and (w == 16 or min(k, f) <= 48)


_NO_RESIDUAL = np.zeros((1, 1), np.float32)


def product_epilogue(x, packed, y, residual=None, lo=-np.inf, hi=np.inf):
    """y = clip(x @ w + bias (+ residual), lo, hi) for x (M, K), y and residual (M, F), each 2-D
    float32 with unit column stride. Returns y."""
    m, k = x.shape
    for name, a in (("x", x), ("y", y), ("residual", residual)):
        if a is not None and (a.dtype != np.float32 or a.ndim != 2 or (a.shape[1] > 1 and a.strides[1] != 4)):
            raise ValueError(f"gemm_blocks: {name} must be a 2-D float32 array with contiguous rows, got "
                             f"{a.dtype} {a.shape} strides {a.strides}.")
    if k != packed.k or y.shape != (m, packed.f) or (residual is not None and residual.shape != y.shape):
        raise ValueError(f"gemm_blocks: expected x (M, {packed.k}) and y / residual (M, {packed.f}), got "
                         f"{x.shape}, {y.shape}, {None if residual is None else residual.shape}.")
    if m == 0 or k == 0:  # no product: the micro-kernel's loop on K runs at least once
        y[...] = np.clip(packed.bias[:packed.f] + (0 if residual is None else residual), lo, hi)
        return y
    res = _NO_RESIDUAL if residual is None else residual
    _driver(packed.mr, packed.nv, packed.w)(x, packed.panels, packed.bias, y, res, residual is not None,
                                            np.float32(lo), np.float32(hi))
    return y


def driver(packed):
    """The numba kernel for ``packed``'s block shape, ``run(x, panels, bias, y, res, has_res, lo, hi)``
    (see product_epilogue for the arguments), for callers running many small products on the same
    packed weights whose arrays are known to fit (the recurrent layers' per-step products): no checks."""
    return _driver(packed.mr, packed.nv, packed.w)
