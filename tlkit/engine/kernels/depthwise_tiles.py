"""Depthwise forward (NHWC, column dilation 1, column stride 1 or 2) for wide channel counts:

    forward_tiles(x, k, bias, lo, hi, sh, sw, dh, top, left, y)   # k (kh, kw, C), y (N, OH, OW, C)

A pass adds one kernel row's taps (5, 3 or 1 at a time) for PIXELS adjacent output pixels into
their sums, over a block of channels: each input pixel and weight loaded serves several
multiply-adds, and the sums are read and written once per kernel row instead of once per tap
(the per-pixel kernel in depthwise.py is bound by those loads and stores). The sums live in a
small array on the stack, so LLVM knows no array overlaps them and vectorizes the passes over the
channels with no run-time overlap checks; indices are unsigned, so no negative-index fix-ups either.
Output rows are written once, clipped (bias, folded BatchNormalization, ReLU6 cost no extra pass).

Stride 1 with a square 3x3 / 5x5 kernel and >= 4 output columns runs depthwise_rows.py instead
(a ring of zero-padded input rows, every pixel through its whole-window pass). Here, square 3x3
and 5x5 kernels (MobileNet's and EfficientNet's) on output rows whose kernel rows all
fall inside the input sum the whole window per pass instead: the 4 sums of a channel stay in
registers over all the taps and are stored once (no reads and writes of the sums per kernel row;
1.14-1.17x faster on those layers in cache); with column stride 2 the 4 pixels read every other
column of the same input runs.

At large batches the input and the output are in memory, not cache, and the hardware prefetcher
alone left the passes waiting (2.3x slower than in cache on one thread): while a row job computes,
it prefetches, spread over its columns, the input rows the next job adds (the next image's first
rows after an image's last row) and the next job's output row, into the outer caches; the output
lines then arrive owned by the core before they are written instead of each store waiting for them.

Blocks of PIXELS columns whose taps all fall inside the input row read the input in place; the
few columns at the left and right edges (and those left over, and with column stride 2 the
border rows' columns) go one by one, each tap checked.
Rows above or below the input are skipped, so no padded copy is made. One output row of one image
is one parallel job.
"""
import llvmlite.binding
import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from tlkit.engine.kernels.depthwise_rows import forward_rows, takes_rows
from tlkit.engine.kernels.depthwise_rows import row3 as _row3, row5 as _row5
from tlkit.engine.kernels.intrinsics import stack_floats

__all__ = ["forward_tiles"]

PIXELS = 4  # adjacent output pixels per pass (the passes below are written for 4)
BLOCK = 256  # channels per pass: the sums and the rows' runs stay in L1 (128-512 measured alike)
SUMS = PIXELS * BLOCK
_B1, _B2, _B3 = np.uint64(BLOCK), np.uint64(2 * BLOCK), np.uint64(3 * BLOCK)  # pixel offsets in the sums
LINE_FLOATS = 16  # floats per 64-byte cache line: one prefetch each
# llvm.prefetch is named after its pointer type: typed pointers before LLVM 15, opaque ones since.
_PREFETCH = "llvm.prefetch.p0" if llvmlite.binding.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"



@intrinsic
def _prefetch(typingctx, array, index):
    """Asks for the cache line holding array[index] (a 1-D array, index in range) to be loaded
    into the caches for reading; no fault, no wait."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        arr = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, arr, [args[1]], wraparound=False)
        byte_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), _PREFETCH)
        # read, locality 2 (kept in the outer caches: the line is used a row's work later), data
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()
    return types.void(array, index), codegen


@njit(cache=True, nogil=True, inline="always")
def _taps5(xf, kf, acc, xb, xc, kb, kc, m):
    """acc's 4 pixels += 5 taps over m channels: input pixels xc floats apart from xf[xb], the taps'
    weights kc apart from kf[kb] (all offsets uint64)."""
    x2, x3, x4 = xc + xc, xc + xc + xc, xc + xc + xc + xc
    x5, x6, x7 = x4 + xc, x4 + x2, x4 + x3
    k2, k3 = kc + kc, kc + kc + kc
    k4 = k2 + k2
    for q in range(m):
        u = np.uint64(q)
        w0, w1, w2, w3, w4 = kf[kb + u], kf[kb + kc + u], kf[kb + k2 + u], kf[kb + k3 + u], kf[kb + k4 + u]
        a0, a1, a2, a3 = xf[xb + u], xf[xb + xc + u], xf[xb + x2 + u], xf[xb + x3 + u]
        a4, a5, a6, a7 = xf[xb + x4 + u], xf[xb + x5 + u], xf[xb + x6 + u], xf[xb + x7 + u]
        acc[u] += a0 * w0 + a1 * w1 + a2 * w2 + a3 * w3 + a4 * w4
        acc[_B1 + u] += a1 * w0 + a2 * w1 + a3 * w2 + a4 * w3 + a5 * w4
        acc[_B2 + u] += a2 * w0 + a3 * w1 + a4 * w2 + a5 * w3 + a6 * w4
        acc[_B3 + u] += a3 * w0 + a4 * w1 + a5 * w2 + a6 * w3 + a7 * w4


@njit(cache=True, nogil=True, inline="always")
def _taps3(xf, kf, acc, xb, xc, kb, kc, m):
    """acc's 4 pixels += 3 taps over m channels."""
    x2, x3 = xc + xc, xc + xc + xc
    x4, x5 = x2 + x2, x2 + x3
    k2 = kc + kc
    for q in range(m):
        u = np.uint64(q)
        w0, w1, w2 = kf[kb + u], kf[kb + kc + u], kf[kb + k2 + u]
        a0, a1, a2 = xf[xb + u], xf[xb + xc + u], xf[xb + x2 + u]
        a3, a4, a5 = xf[xb + x3 + u], xf[xb + x4 + u], xf[xb + x5 + u]
        acc[u] += a0 * w0 + a1 * w1 + a2 * w2
        acc[_B1 + u] += a1 * w0 + a2 * w1 + a3 * w2
        acc[_B2 + u] += a2 * w0 + a3 * w1 + a4 * w2
        acc[_B3 + u] += a3 * w0 + a4 * w1 + a5 * w2


@njit(cache=True, nogil=True, inline="always")
def _taps1(xf, kf, acc, xb, xc, kb, m):
    """acc's 4 pixels += 1 tap over m channels."""
    x2, x3 = xc + xc, xc + xc + xc
    for q in range(m):
        u = np.uint64(q)
        w0 = kf[kb + u]
        acc[u] += xf[xb + u] * w0
        acc[_B1 + u] += xf[xb + xc + u] * w0
        acc[_B2 + u] += xf[xb + x2 + u] * w0
        acc[_B3 + u] += xf[xb + x3 + u] * w0


@njit(cache=True, nogil=True, inline="always")
def _kernel_row(xf, kf, acc, xb, xc, kb, kc, kw, m):
    """acc's 4 pixels += all kw taps of one kernel row, 5, 3 or 1 per pass (a pass of more taps
    makes fewer passes over the sums; 5 and 3 cover MobileNet's and EfficientNet's kernels)."""
    j = 0
    while j < kw:
        xj = xb + np.uint64(j) * xc
        kj = kb + np.uint64(j) * kc
        if kw - j >= 5:
            _taps5(xf, kf, acc, xj, xc, kj, kc, m)
            j += 5
        elif kw - j >= 3:
            _taps3(xf, kf, acc, xj, xc, kj, kc, m)
            j += 3
        else:
            _taps1(xf, kf, acc, xj, xc, kj, m)
            j += 1


@njit(cache=True, nogil=True, inline="always")
def _row3s2(xf, kf, xb, kb, xc, s0, s1, s2, s3):
    """As _row3, the 4 pixels 2 input columns apart (stride 2): 9 input columns."""
    x2 = xc + xc
    x3, x4 = x2 + xc, x2 + x2
    x5, x6, x7, x8 = x4 + xc, x4 + x2, x4 + x3, x4 + x4
    a0, a1, a2, a3, a4 = xf[xb], xf[xb + xc], xf[xb + x2], xf[xb + x3], xf[xb + x4]
    a5, a6, a7, a8 = xf[xb + x5], xf[xb + x6], xf[xb + x7], xf[xb + x8]
    w0, w1, w2 = kf[kb], kf[kb + xc], kf[kb + x2]
    return (s0 + a0 * w0 + a1 * w1 + a2 * w2, s1 + a2 * w0 + a3 * w1 + a4 * w2,
            s2 + a4 * w0 + a5 * w1 + a6 * w2, s3 + a6 * w0 + a7 * w1 + a8 * w2)


@njit(cache=True, nogil=True, inline="always")
def _row5s2(xf, kf, xb, kb, xc, s0, s1, s2, s3):
    """As _row5, the 4 pixels 2 input columns apart (stride 2): 11 input columns."""
    x2 = xc + xc
    x3, x4 = x2 + xc, x2 + x2
    x5, x6, x7, x8 = x4 + xc, x4 + x2, x4 + x3, x4 + x4
    x9, x10 = x8 + xc, x8 + x2
    a0, a1, a2, a3 = xf[xb], xf[xb + xc], xf[xb + x2], xf[xb + x3]
    a4, a5, a6, a7 = xf[xb + x4], xf[xb + x5], xf[xb + x6], xf[xb + x7]
    a8, a9, a10 = xf[xb + x8], xf[xb + x9], xf[xb + x10]
    w0, w1, w2, w3, w4 = kf[kb], kf[kb + xc], kf[kb + x2], kf[kb + x3], kf[kb + x4]
    return (s0 + a0 * w0 + a1 * w1 + a2 * w2 + a3 * w3 + a4 * w4,
            s1 + a2 * w0 + a3 * w1 + a4 * w2 + a5 * w3 + a6 * w4,
            s2 + a4 * w0 + a5 * w1 + a6 * w2 + a7 * w3 + a8 * w4,
            s3 + a6 * w0 + a7 * w1 + a8 * w2 + a9 * w3 + a10 * w4)


@njit(cache=True, nogil=True, inline="always")
def _window3(xf, kf, bias, acc, xb, row, xc, q0, m, sw):
    """acc's 4 pixels = bias + a whole 3x3 window over m channels from q0: the top-left input at
    xf[xb], input rows ``row`` floats apart, input columns and weights xc apart, the pixels sw (1 or
    2) columns apart. (Offsets built by additions and the taps written out: LLVM then sees
    contiguous loads and vectorizes over the channels; the stride is tested outside the loops.)"""
    k1 = xc + xc + xc  # one kernel row of weights
    k2, x2 = k1 + k1, row + row
    if sw == 1:
        for q in range(m):
            u = np.uint64(q)
            s = bias[q0 + u]
            xi, ki = xb + u, q0 + u
            s0, s1, s2, s3 = _row3(xf, kf, xi, ki, xc, s, s, s, s)
            s0, s1, s2, s3 = _row3(xf, kf, xi + row, ki + k1, xc, s0, s1, s2, s3)
            s0, s1, s2, s3 = _row3(xf, kf, xi + x2, ki + k2, xc, s0, s1, s2, s3)
            acc[u], acc[_B1 + u], acc[_B2 + u], acc[_B3 + u] = s0, s1, s2, s3
    else:
        for q in range(m):
            u = np.uint64(q)
            s = bias[q0 + u]
            xi, ki = xb + u, q0 + u
            s0, s1, s2, s3 = _row3s2(xf, kf, xi, ki, xc, s, s, s, s)
            s0, s1, s2, s3 = _row3s2(xf, kf, xi + row, ki + k1, xc, s0, s1, s2, s3)
            s0, s1, s2, s3 = _row3s2(xf, kf, xi + x2, ki + k2, xc, s0, s1, s2, s3)
            acc[u], acc[_B1 + u], acc[_B2 + u], acc[_B3 + u] = s0, s1, s2, s3


@njit(cache=True, nogil=True, inline="always")
def _window5(xf, kf, bias, acc, xb, row, xc, q0, m, sw):
    """As _window3, for a 5x5 window."""
    k1 = xc + xc + xc + xc + xc
    k2, x2 = k1 + k1, row + row
    k3, x3 = k2 + k1, x2 + row
    k4, x4 = k2 + k2, x2 + x2
    if sw == 1:
        for q in range(m):
            u = np.uint64(q)
            s = bias[q0 + u]
            xi, ki = xb + u, q0 + u
            s0, s1, s2, s3 = _row5(xf, kf, xi, ki, xc, s, s, s, s)
            s0, s1, s2, s3 = _row5(xf, kf, xi + row, ki + k1, xc, s0, s1, s2, s3)
            s0, s1, s2, s3 = _row5(xf, kf, xi + x2, ki + k2, xc, s0, s1, s2, s3)
            s0, s1, s2, s3 = _row5(xf, kf, xi + x3, ki + k3, xc, s0, s1, s2, s3)
            s0, s1, s2, s3 = _row5(xf, kf, xi + x4, ki + k4, xc, s0, s1, s2, s3)
            acc[u], acc[_B1 + u], acc[_B2 + u], acc[_B3 + u] = s0, s1, s2, s3
    else:
        for q in range(m):
            u = np.uint64(q)
            s = bias[q0 + u]
            xi, ki = xb + u, q0 + u
            s0, s1, s2, s3 = _row5s2(xf, kf, xi, ki, xc, s, s, s, s)
            s0, s1, s2, s3 = _row5s2(xf, kf, xi + row, ki + k1, xc, s0, s1, s2, s3)
            s0, s1, s2, s3 = _row5s2(xf, kf, xi + x2, ki + k2, xc, s0, s1, s2, s3)
            s0, s1, s2, s3 = _row5s2(xf, kf, xi + x3, ki + k3, xc, s0, s1, s2, s3)
            s0, s1, s2, s3 = _row5s2(xf, kf, xi + x4, ki + k4, xc, s0, s1, s2, s3)
            acc[u], acc[_B1 + u], acc[_B2 + u], acc[_B3 + u] = s0, s1, s2, s3


@njit(cache=True, nogil=True, inline="always")
def _write(yf, acc, lo, hi, shape, n, r, c0, stop, q0, m):
    """Output columns [c0, stop) of row r, channels [q0, q0 + m) = the sums, clipped."""
    ch, oh, ow = shape[3], shape[4], shape[5]
    for c in range(c0, stop):
        yb = np.uint64(((n * oh + r) * ow + c) * ch + q0)
        ab = np.uint64((c - c0) * BLOCK)
        for q in range(m):
            yf[yb + np.uint64(q)] = min(max(acc[ab + np.uint64(q)], lo), hi)


@njit(cache=True, nogil=True, inline="always")
def _block(xf, kf, bias, lo, hi, yf, acc, shape, n, r, c0, sh, dh, top, left):
    """Output columns [c0, c0 + PIXELS) of row r of image n, all channels, column stride 1; every
    tap of these columns reads a column of the input."""
    n_img, h, w, ch, oh, ow, kh, kw = shape
    uch = np.uint64(ch)
    for q0 in range(0, ch, BLOCK):
        m = min(BLOCK, ch - q0)
        for p in range(PIXELS):
            for q in range(m):
                acc[np.uint64(p * BLOCK + q)] = bias[np.uint64(q0 + q)]
        for i in range(kh):
            ii = r * sh - top + i * dh
            if 0 <= ii < h:
                _kernel_row(xf, kf, acc, np.uint64(((n * h + ii) * w + c0 - left) * ch + q0), uch,
                            np.uint64(i * kw * ch + q0), uch, kw, m)
        _write(yf, acc, lo, hi, shape, n, r, c0, c0 + PIXELS, q0, m)


@njit(cache=True, nogil=True, inline="always")
def _window_block(xf, kf, bias, lo, hi, yf, acc, shape, n, r, c0, sh, sw, dh, top, left):
    """Output columns [c0, c0 + PIXELS) of row r of image n by whole-window passes (square 3x3 / 5x5
    kernels; every tap of these columns reads inside the input)."""
    n_img, h, w, ch, oh, ow, kh, kw = shape
    uch, row = np.uint64(ch), np.uint64(dh * w * ch)
    for q0 in range(0, ch, BLOCK):
        m = min(BLOCK, ch - q0)
        xb = np.uint64(((n * h + r * sh - top) * w + c0 * sw - left) * ch + q0)
        if kw == 3:
            _window3(xf, kf, bias, acc, xb, row, uch, np.uint64(q0), m, sw)
        else:
            _window5(xf, kf, bias, acc, xb, row, uch, np.uint64(q0), m, sw)
        _write(yf, acc, lo, hi, shape, n, r, c0, c0 + PIXELS, q0, m)


@njit(cache=True, nogil=True, inline="always")
def _pixel(xf, kf, bias, lo, hi, yf, acc, shape, n, r, c, sh, sw, dh, top, left):
    """Output column c of row r of image n, all channels, its taps checked against the borders."""
    n_img, h, w, ch, oh, ow, kh, kw = shape
    for q0 in range(0, ch, BLOCK):
        m = min(BLOCK, ch - q0)
        for q in range(m):
            acc[np.uint64(q)] = bias[np.uint64(q0 + q)]
        for i in range(kh):
            ii = r * sh - top + i * dh
            if ii < 0 or ii >= h:
                continue
            for j in range(kw):
                jj = c * sw - left + j
                if 0 <= jj < w:
                    xb = np.uint64(((n * h + ii) * w + jj) * ch + q0)
                    kb = np.uint64((i * kw + j) * ch + q0)
                    for q in range(m):
                        u = np.uint64(q)
                        acc[u] += xf[xb + u] * kf[kb + u]
        _write(yf, acc, lo, hi, shape, n, r, c, c + 1, q0, m)


@njit(cache=True, nogil=True, inline="always")
def _new_rows(shape, job, sh, dh, top):
    """The image and the input rows [a0, a1) that row job ``job`` reads and the job before it does
    not (an image's first job: all its rows); (0, 0, 0) past the last job."""
    n_img, h, w, ch, oh, ow, kh, kw = shape
    n, r = job // oh, job % oh
    if n >= n_img:
        return 0, 0, 0
    last = min(r * sh - top + (kh - 1) * dh + 1, h)
    if r == 0:
        return n, 0, max(last, 0)
    return n, max((r - 1) * sh - top + (kh - 1) * dh + 1, 0), last


@njit(cache=True, nogil=True, inline="always")
def _prefetch_next(xf, yf, shape, na, a0, a1, job, c0, c1):
    """Prefetches the share that output columns [c0, c1) stand for of input rows [a0, a1) of image
    na (the row's floats in proportion) and of row job ``job``'s output (its columns [c0, c1))."""
    n_img, h, w, ch, oh, ow, kh, kw = shape
    span = w * ch
    for a in range(a0, a1):
        base = (na * h + a) * span
        for e in range(base + c0 * span // ow, base + c1 * span // ow, LINE_FLOATS):
            _prefetch(xf, np.uint64(e))
    if job < n_img * oh:
        base = job * ow * ch
        for e in range(base + c0 * ch, base + c1 * ch, LINE_FLOATS):
            _prefetch(yf, np.uint64(e))


def forward_tiles(x, k, bias, lo, hi, sh, sw, dh, top, left, y):
    """y = clip(depthwise(x, k) + bias, lo, hi); stride 1 with a square 3x3 / 5x5 kernel runs
    depthwise_rows.forward_rows (every pixel through the whole-window pass), the rest the kernel below."""
    if takes_rows(k.shape, sh, sw, y.shape):
        forward_rows(x, k, bias, lo, hi, dh, top, left, y)
    else:
        _forward_tiles(x, k, bias, lo, hi, sh, sw, dh, top, left, y)


@njit(cache=True, nogil=True, parallel=True, fastmath={"contract"})
def _forward_tiles(x, k, bias, lo, hi, sh, sw, dh, top, left, y):
    """y = clip(depthwise(x, k) + bias, lo, hi), row stride sh, column stride sw (1, or 2 with a
    square 3x3 / 5x5 kernel), row dilation dh, column dilation 1; lo/hi may be -inf/inf.
    k: (kh, kw, C). top/left: the zero rows and columns virtually above and left of x (y's shape
    sets the bottom and right ones), so a ZeroPadding2D before a 'valid' conv needs no padded copy."""
    n_img, h, w, ch = x.shape
    _, oh, ow, _ = y.shape
    kh, kw, _ = k.shape
    shape = (n_img, h, w, ch, oh, ow, kh, kw)
    first = min((left + sw - 1) // sw, ow)  # columns [first, end) read no column outside the input
    end = max(first, min(ow, (w + left - (kw - 1) + sw - 1) // sw))
    inner = first + (end - first) // PIXELS * PIXELS  # [first, inner): whole blocks of such columns
    xf, kf, yf = x.reshape(-1), k.reshape(-1), y.reshape(-1)
    whole = kh == kw and (kw == 3 or kw == 5)
    for job in prange(n_img * oh):
        n = job // oh
        r = job % oh
        acc = numba.carray(stack_floats(SUMS), SUMS)
        na, a0, a1 = _new_rows(shape, job + 1, sh, dh, top)  # what the next job reads from memory
        for c in range(first):
            _prefetch_next(xf, yf, shape, na, a0, a1, job + 1, c, c + 1)
            _pixel(xf, kf, bias, lo, hi, yf, acc, shape, n, r, c, sh, sw, dh, top, left)
        window = whole and r * sh - top >= 0 and r * sh - top + (kh - 1) * dh < h
        for c0 in range(first, inner, PIXELS):
            _prefetch_next(xf, yf, shape, na, a0, a1, job + 1, c0, c0 + PIXELS)
            if window:
                _window_block(xf, kf, bias, lo, hi, yf, acc, shape, n, r, c0, sh, sw, dh, top, left)
            elif sw == 1:
                _block(xf, kf, bias, lo, hi, yf, acc, shape, n, r, c0, sh, dh, top, left)
            else:
                for c in range(c0, c0 + PIXELS):
                    _pixel(xf, kf, bias, lo, hi, yf, acc, shape, n, r, c, sh, sw, dh, top, left)
        for c in range(inner, ow):
            _prefetch_next(xf, yf, shape, na, a0, a1, job + 1, c, c + 1)
            _pixel(xf, kf, bias, lo, hi, yf, acc, shape, n, r, c, sh, sw, dh, top, left)
