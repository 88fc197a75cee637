"""Chunks of tlkit's split kernels as native jobs for a worker's job table (tlkit/utils/job_table.py):
the worker runs them without ever taking the GIL.

Each kind is a numba ``cfunc`` ``void(int64*)`` that rebuilds its arrays from the row's addresses
(numba.carray) and calls the kernel the Python chunk would call, over the chunk's range, plus an
njit ``post_*`` that writes the row from the arrays themselves (addresses, sizes, strides) and marks it
POSTED. The Python routes hand a chunk over through ``poster``: ``work.native = jobs.xxx_poster(...)``,
a function ``(table, lo, hi) -> True`` posting the chunk [lo, hi), used by ``threads.run_chunks`` when
the worker serves a job table (else the Python chunk runs as before). A poster is None when the
arrays do not fit the kind (a strided operand, no BLAS entry point found): the Python route then.

Kinds: ``gemm_poster`` (gemm_blocks' product + epilogue over rows or weight panels),
``winograd_poster`` (Winograd's input transform of tile rows, the 36 products through BLAS's sgemm,
the output transform; or only the products + output transform of a block of output channels),
``bands_poster`` (a conv + max pool by bands, conv_pool_bands), ``pool_poster`` (max pooling's rows);
jobs_mbconv.py: an inverted-residual block's bands.
"""
import ctypes
import functools
import threading

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

from tlkit.utils.job_table import ARGS, FN, call_kernel, float32_pointer, float64_pointer, kernel_key, store_posted

_JOB = types.void(types.CPointer(types.int64))
_lock = threading.Lock()
_made = {}


def _once(key, make):
    """make(), built once per process per key (cfuncs compile or load on first use, not at import): a job's
    cfunc, whose ``address`` the posters write in the rows. Its closure holds kernel_keys, bools and ints
    only, so that numba's cache serves it to every process after the first (utils/job_table.py)."""
    made = _made.get(key)
    if made is None:
        with _lock:
            made = _made.get(key)
            if made is None:
                made = _made[key] = make()
    return made


_scratch = {"floats": np.empty(0, np.float32)}


def worker_scratch(floats):
    """The buffer (at least ``floats`` float32) the worker's jobs carve their scratch from: kept from
    job to job (a fresh buffer of a few MB costs its page faults at every job). One job runs at a time
    (worker 1, its table posted to under a lock), so one buffer serves them all."""
    buf = _scratch["floats"]
    if buf.size < floats:
        buf = _scratch["floats"] = np.empty(floats, np.float32)
    return buf


@njit(inline="always")
def _carve(address, floats):
    """A 1-D float32 array of ``floats`` at ``address``, and the next address, 64-byte aligned after it."""
    return carray(float32_pointer(address), (floats,)), address + 4 * (-(-floats // 16) * 16)


@njit(inline="always")
def _address(a):
    return a.ctypes.data


@njit(inline="always")
def _rows(address, rows, stride, cols):
    """A 2-D float32 view: ``rows`` rows of ``cols`` floats, ``stride`` floats apart."""
    return carray(float32_pointer(address), (rows, stride))[:, :cols]


# ----- gemm_blocks: y[r0:r1, panels p0:p1] = clip(x[r0:r1] @ w + bias (+ res), lo, hi) -----

_GEMM_ARGS = 19


def _gemm_job(run_key):
    @cfunc(_JOB, cache=True)
    def job(pointer):
        a = carray(pointer, _GEMM_ARGS)
        fa = carray(float64_pointer(pointer), _GEMM_ARGS)
        k, nr, f = a[2], a[5], a[9]
        r0, r1, p0, p1 = a[13], a[14], a[15], a[16]
        rows = r1 - r0
        c0, c1 = p0 * nr, min(f, p1 * nr)
        x = _rows(a[0] + 4 * r0 * a[1], rows, a[1], k)
        panels = carray(float32_pointer(a[3] + 4 * p0 * k * nr), (p1 - p0, k, nr))
        bias = carray(float32_pointer(a[6] + 4 * c0), ((p1 - p0) * nr,))
        y = _rows(a[7] + 4 * (r0 * a[8] + c0), rows, a[8], c1 - c0)
        res = _rows(a[10] + 4 * (r0 * a[11] + c0), rows, a[11], c1 - c0) if a[12] else y
        call_kernel(run_key, x, panels, bias, y, res, a[12] != 0, np.float32(fa[17]), np.float32(fa[18]))

    return job


@njit(cache=True)
def post_gemm(table, fn, x, panels, bias, y, res, has_res, lo, hi, r0, r1, p0, p1):
    """Writes a gemm job in ``table`` and posts it (x, y, res: 2-D float32, unit column stride)."""
    a = table[ARGS:]
    fa = table.view(np.float64)[ARGS:]
    table[FN] = fn
    a[0], a[1], a[2] = _address(x), x.strides[0] // 4, x.shape[1]
    a[3], a[4], a[5] = _address(panels), panels.shape[0], panels.shape[2]
    a[6] = _address(bias)
    a[7], a[8], a[9] = _address(y), y.strides[0] // 4, y.shape[1]
    a[10], a[11], a[12] = _address(res), res.strides[0] // 4, has_res
    a[13], a[14], a[15], a[16] = r0, r1, p0, p1
    fa[17], fa[18] = lo, hi
    store_posted(table)


def _unit_columns(a):
    return a.dtype == np.float32 and a.ndim == 2 and (a.shape[1] <= 1 or a.strides[1] == 4) and a.strides[0] % 4 == 0


def gemm_poster(driver, x2, packed, y2, r2, lo, hi, by_panels):
    """A poster of gemm_blocks.product_epilogue(x2, packed, y2, r2, lo, hi)'s chunks, ``driver`` the
    kernel it runs for packed's block shape (gemm_blocks._driver): rows [lo, hi) of x2 / y2, or
    (``by_panels``) the weight panels [lo, hi) (their columns of y2 and r2). None when an operand does
    not fit (see the module's docstring)."""
    if not all(_unit_columns(a) for a in (x2, y2) + (() if r2 is None else (r2,))) or 0 in x2.shape:
        return None
    fn = _once(("gemm", driver), lambda: _gemm_job(kernel_key(driver))).address
    res, has_res = (y2, False) if r2 is None else (r2, True)
    rows, panels = x2.shape[0], packed.panels.shape[0]

    def post(table, c0, c1):
        r0, r1, p0, p1 = (0, rows, c0, c1) if by_panels else (c0, c1, 0, panels)
        post_gemm(table, fn, x2, packed.panels, packed.bias, y2, res, has_res, lo, hi, r0, r1, p0, p1)
        return True
    return post


# ----- Winograd F(4x4, 3x3): transforms and 36 sgemm products of tile rows, or of an output channel block -----

@functools.cache
def _sgemm():
    """(address of BLAS's cblas_sgemm as numpy's BLAS exports it, whether its ints are 64-bit), or None."""
    try:
        from threadpoolctl import threadpool_info

        np.dot(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))  # numpy's BLAS loaded
        libraries = [i for i in threadpool_info() if i.get("user_api") == "blas" and i.get("internal_api") == "openblas"]
        libraries.sort(key=lambda i: "numpy" not in i["filepath"])
        for info in libraries:
            library = ctypes.CDLL(info["filepath"])
            for name, ilp64 in (("scipy_cblas_sgemm64_", True), ("cblas_sgemm64_", True), ("cblas_sgemm", False)):
                if hasattr(library, name):
                    return ctypes.cast(getattr(library, name), ctypes.c_void_p).value, ilp64
    except (ImportError, OSError):
        pass
    return None


def _sgemm_intrinsic(int_bits):
    @intrinsic
    def call(typingctx, fn, m, n, k, a, lda, b, ldb, c, ldc):
        """cblas_sgemm(RowMajor, NoTrans, NoTrans, m, n, k, 1, a, lda, b, ldb, 0, c, ldc) through the
        address ``fn``; a, b, c: addresses of float32 matrices."""
        if not all(isinstance(t, types.Integer) for t in (fn, m, n, k, a, lda, b, ldb, c, ldc)):
            return None

        def codegen(context, builder, signature, args):
            i32, blas_int, f32 = ir.IntType(32), ir.IntType(int_bits), ir.FloatType()
            p = f32.as_pointer()
            function_type = ir.FunctionType(ir.VoidType(), [i32, i32, i32, blas_int, blas_int, blas_int, f32, p,
                                                            blas_int, p, blas_int, f32, p, blas_int])
            values = [context.cast(builder, v, t, types.int64) for v, t in zip(args, signature.args)]
            fn_, m_, n_, k_, a_, lda_, b_, ldb_, c_, ldc_ = values

            def blas(value):
                return builder.trunc(value, blas_int) if int_bits < 64 else value

            builder.call(builder.inttoptr(fn_, function_type.as_pointer()),
                         [ir.Constant(i32, 101), ir.Constant(i32, 111), ir.Constant(i32, 111), blas(m_), blas(n_),
                          blas(k_), ir.Constant(f32, 1.0), builder.inttoptr(a_, p), blas(lda_),
                          builder.inttoptr(b_, p), blas(ldb_), ir.Constant(f32, 0.0), builder.inttoptr(c_, p),
                          blas(ldc_)])
            return context.get_dummy_value()

        return types.none(fn, m, n, k, a, lda, b, ldb, c, ldc), codegen
    return call


_sgemm64, _sgemm32 = _sgemm_intrinsic(64), _sgemm_intrinsic(32)


@njit(inline="always")
def _sgemm_call(ilp64, sgemm, m, n, k, a, lda, b, ldb, c, ldc):
    if ilp64:
        _sgemm64(sgemm, m, n, k, a, lda, b, ldb, c, ldc)
    else:
        _sgemm32(sgemm, m, n, k, a, lda, b, ldb, c, ldc)
_WINOGRAD_ARGS = 28


def _winograd_job(ilp64, input_tiles_key, output_tiles_key):
    @cfunc(_JOB, cache=True)
    def job(pointer):
        a = carray(pointer, _WINOGRAD_ARGS)
        n, h, w, ch, f = a[1], a[2], a[3], a[4], a[6]
        r0, r1, c0, c1 = a[18], a[19], a[20], a[21]
        tiles_h, tiles_w, pad_top, pad_left = a[22], a[23], a[24], a[25]
        rows, fc = r1 - r0, c1 - c0
        t = rows * tiles_w
        x = carray(float32_pointer(a[0]), (n, h, w, ch))
        bias = carray(float32_pointer(a[7] + 4 * c0), (fc,))
        y = carray(float32_pointer(a[11]), (a[12], a[13], a[14], a[15]))
        m_flat, free = _carve(a[27], 36 * t * fc)
        m = m_flat.reshape(36, t, fc)
        if a[17] == 0:  # the chunk's tile rows, transformed here
            v = _carve(free, 36 * t * ch)[0].reshape(36, t, ch)
            call_kernel(input_tiles_key, x, 0, rows, r0, tiles_h, tiles_w, pad_top, pad_left, v)
        else:  # every tile row, transformed once by the caller (a block of output channels)
            v = carray(float32_pointer(a[17]), (36, t, ch))
        sgemm, v0, m0 = a[26], v.ctypes.data, m.ctypes.data  # BLAS's address: this process's, per job
        for p in range(36):
            _sgemm_call(ilp64, sgemm, t, fc, ch, v0 + 4 * p * t * ch, ch, a[5] + 4 * (p * ch * f + c0), f,
                        m0 + 4 * p * t * fc, fc)
        call_kernel(output_tiles_key, m, 0, rows, r0, tiles_h, tiles_w, bias, a[8] != 0, a[9] != 0, y, a[16] + c0,
                    a[10] != 0)

    return job


@njit(cache=True)
def post_winograd(table, fn, sgemm, x, u, bias, has_bias, relu, pool2, y, lo, v_address, r0, r1, c0, c1, tiles_h,
                  tiles_w, pad_top, pad_left, worker_scratch):
    """Writes a Winograd job in ``table`` and posts it (x, u, bias, y C-contiguous)."""
    a = table[ARGS:]
    table[FN] = fn
    a[0], a[1], a[2], a[3], a[4] = _address(x), x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    a[5], a[6], a[7], a[8], a[9], a[10] = _address(u), u.shape[2], _address(bias), has_bias, relu, pool2
    a[11], a[12], a[13], a[14], a[15], a[16] = _address(y), y.shape[0], y.shape[1], y.shape[2], y.shape[3], lo
    a[17], a[18], a[19], a[20], a[21] = v_address, r0, r1, c0, c1
    a[22], a[23], a[24], a[25], a[26] = tiles_h, tiles_w, pad_top, pad_left, sgemm
    a[27] = _address(worker_scratch)
    store_posted(table)


def winograd_poster(transforms, x, u, bias, has_bias, relu, y, lo, pool2, tiles_h, tiles_w, pad_top, pad_left,
                    v=None):
    """A poster of Winograd chunks (``transforms``: winograd's input and output tile kernels): tile rows
    [lo, hi) (transforms and products), or with ``v`` (every tile row's transformed input) the output
    channels [lo, hi). None when an operand is not a C-contiguous float32 array or no BLAS entry point
    was found."""
    blas = _sgemm()
    operands = (x, u, bias, y) + (() if v is None else (v,))
    if blas is None or not all(a.dtype == np.float32 and a.flags.c_contiguous for a in operands):
        return None
    address, ilp64 = blas
    fn = _once(("winograd", ilp64) + tuple(transforms),
               lambda: _winograd_job(ilp64, *map(kernel_key, transforms))).address
    total_rows = x.shape[0] * tiles_h
    v_address = 0 if v is None else v.ctypes.data

    def post(table, c0, c1):
        r0, r1, f0, f1 = (0, total_rows, c0, c1) if v is not None else (c0, c1, 0, u.shape[2])
        floats = 36 * (r1 - r0) * tiles_w * (f1 - f0 + (x.shape[3] if v is None else 0)) + 32
        post_winograd(table, fn, address, x, u, bias, has_bias, relu, pool2, y, lo, v_address, r0, r1, f0, f1,
                      tiles_h, tiles_w, pad_top, pad_left, worker_scratch(floats))
        return True
    return post


# ----- a conv + max pool by bands of pooled rows (conv_pool_bands): im2col, one sgemm, pool + bias + ReLU -----

_BANDS_ARGS = 38


def _bands_job(ilp64, im2col_rows_key, pool_band_bias_relu_key):
    @cfunc(_JOB, cache=True)
    def job(pointer):
        a = carray(pointer, _BANDS_ARGS)
        k, f = a[5], a[6]
        x = carray(float32_pointer(a[0]), (a[1], a[2], a[3], a[4]))
        bias = carray(float32_pointer(a[8]), (f,))
        y = carray(float32_pointer(a[11]), (a[12], a[13], a[14], f))
        kh, kw, sh, sw, dh, dw, pad_top, pad_left = a[15], a[16], a[17], a[18], a[19], a[20], a[21], a[22]
        oh, ow, ph, pw, psh, psw, ptop, pleft = a[23], a[24], a[25], a[26], a[27], a[28], a[29], a[30]
        per, per_image, most = a[31], a[32], a[33]
        patches_flat, free = _carve(a[37], most * ow * k)
        patches = patches_flat.reshape(most * ow, k)
        conv = _carve(free, most * ow * f)[0].reshape(most, ow, f)
        for i in range(a[34], a[35]):
            img, p0 = i // per_image, (i % per_image) * per
            p1 = min(p0 + per, a[13])
            r0 = max(p0 * psh - ptop, 0)
            r1 = min((p1 - 1) * psh - ptop + ph, oh)
            call_kernel(im2col_rows_key, x, img, img + 1, r0, r1, kh, kw, sh, sw, dh, dw, pad_top, pad_left, ow, patches)
            _sgemm_call(ilp64, a[36], (r1 - r0) * ow, f, k, patches.ctypes.data, k, a[7], f, conv.ctypes.data, f)
            call_kernel(pool_band_bias_relu_key, conv[:r1 - r0], r0, oh, ph, pw, psh, psw, ptop, pleft, p0, bias,
                        a[9] != 0, a[10] != 0, y[img, p0:p1])

    return job


@njit(cache=True)
def post_bands(table, fn, sgemm, x, wmat, bias, has_bias, relu, y, window, pad_top, pad_left, conv_hw, pool,
               pool_strides, pool_pads, per, most, b0, b1, worker_scratch):
    """Writes a conv + max pool job over bands [b0, b1) in ``table`` and posts it (arrays C-contiguous)."""
    a = table[ARGS:]
    table[FN] = fn
    a[0], a[1], a[2], a[3], a[4] = _address(x), x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    a[5], a[6], a[7], a[8], a[9], a[10] = wmat.shape[0], wmat.shape[1], _address(wmat), _address(bias), has_bias, relu
    a[11], a[12], a[13], a[14] = _address(y), y.shape[0], y.shape[1], y.shape[2]
    for i in range(6):
        a[15 + i] = window[i]
    a[21], a[22], a[23], a[24] = pad_top, pad_left, conv_hw[0], conv_hw[1]
    a[25], a[26], a[27], a[28], a[29], a[30] = pool[0], pool[1], pool_strides[0], pool_strides[1], pool_pads[0], \
        pool_pads[1]
    a[31], a[32], a[33], a[34], a[35], a[36] = per, -(-y.shape[1] // per), most, b0, b1, sgemm
    a[37] = _address(worker_scratch)
    store_posted(table)


def bands_poster(kernels, x, wmat, bias, has_bias, relu, window, pad_top, pad_left, conv_hw, pool, pool_strides,
                 pool_pads, y, per, most):
    """A poster of conv_pool_bands.conv_maxpool_bands's chunks (``kernels``: its im2col and pooling
    kernels): bands [lo, hi) of ``per`` pooled rows (image-major, ``most`` conv rows at most). None as
    for the other kinds."""
    blas = _sgemm()
    if blas is None or not all(a.dtype == np.float32 and a.flags.c_contiguous for a in (x, wmat, bias, y)):
        return None
    address, ilp64 = blas
    fn = _once(("bands", ilp64) + tuple(kernels), lambda: _bands_job(ilp64, *map(kernel_key, kernels))).address
    floats = most * conv_hw[1] * (wmat.shape[0] + wmat.shape[1]) + 32

    def post(table, b0, b1):
        post_bands(table, fn, address, x, wmat, bias, has_bias, relu, y, window, pad_top, pad_left, conv_hw, pool,
                   pool_strides, pool_pads, per, most, b0, b1, worker_scratch(floats))
        return True
    return post


# ----- max pooling without argmax (pool.max_pool_rows_kernel) over output rows [j0, j1), image-major -----

_POOL_ARGS = 16


def _pool_job(rows_key):
    @cfunc(_JOB, cache=True)
    def job(pointer):
        a = carray(pointer, _POOL_ARGS)
        x = carray(float32_pointer(a[0]), (a[1], a[2], a[3], a[4]))
        y = carray(float32_pointer(a[5]), (a[1], a[6], a[7], a[4]))
        call_kernel(rows_key, x, a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], y)

    return job


@njit(cache=True)
def post_pool(table, fn, x, y, window, j0, j1):
    """Writes a max pooling job over output rows [j0, j1) in ``table`` and posts it (x, y C-contiguous)."""
    a = table[ARGS:]
    table[FN] = fn
    a[0], a[1], a[2], a[3], a[4] = _address(x), x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    a[5], a[6], a[7] = _address(y), y.shape[1], y.shape[2]
    for i in range(6):
        a[8 + i] = window[i]
    a[14], a[15] = j0, j1
    store_posted(table)


def pool_poster(kernel, x, y, window):
    """A poster of max pooling's chunks (``kernel``: pool.max_pool_rows_kernel, window its (ph, pw, sh, sw,
    top, left)): output rows [lo, hi), image-major. None when x or y is not C-contiguous float32."""
    if not all(a.dtype == np.float32 and a.flags.c_contiguous for a in (x, y)):
        return None
    fn = _once(("pool", kernel), lambda: _pool_job(kernel_key(kernel))).address
    window = tuple(int(v) for v in window)

    def post(table, j0, j1):
        post_pool(table, fn, x, y, window, j0, j1)
        return True
    return post
