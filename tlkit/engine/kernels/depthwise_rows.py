"""Depthwise forward (NHWC), stride 1, square 3x3 / 5x5 kernels (MobileNet's and EfficientNet's),
through a ring of zero-padded input rows:

    if takes_rows(k.shape, sh, sw, y.shape):
        forward_rows(x, k, bias, lo, hi, dh, top, left, y)     # k (kh, kw, C), y (N, OH, OW, C)

A job is a band of output rows of one image (a whole image when the batch gives every thread
several). It keeps the kh (row dilation: (kh - 1) * dh + 1) input rows its current output row
reads in a ring of rows padded with zero columns left and right, each input row copied in once
(rows above or below the input: zeros). Every output pixel, border ones included, then goes
through the same whole-window pass: for 4 adjacent output pixels over all channels, the 4 sums of
a channel stay in registers over the 9 / 25 taps (each input and weight load serves several
multiply-adds), start from the bias and are clipped as they are written (bias, folded
BatchNormalization and ReLU6 cost no extra pass). A row's last block overlaps the one before it
when the width is not a multiple of the block's (those pixels are written twice, the same values).

Before, border columns went pixel by pixel with every tap checked and a pass over the sums per
tap, border rows by kernel-row passes, and the sums went through a stack buffer before the
output: on MobileNet's 14 x 14 x 576 and EfficientNet's 28 x 28 x 240 layers at batch 32 the ring
measured 1.1-1.2x faster (the copy costs one L1/L2 write per input float, the borders no longer
cost ~15%).

Rows whose width suits it (a multiple of 7, as MobileNet's and EfficientNet's at 224 x 224) go by
blocks of 7 pixels instead of 4 (the block width's multiple above): the 7 sums of a channel over
9 / 11 input columns, so each load serves more multiply-adds, and a 14-pixel row computes 14
pixels instead of 16 (1.15-1.3x faster on those layers).
"""
import numba
import numpy as np
from numba import njit, prange

from tlkit.engine.kernels.depthwise_stream import LINE_FLOATS, copy_out, store_fence, streams

__all__ = ["forward_rows", "takes_rows", "wide_blocks", "row3", "row5"]

PIXELS = 4  # adjacent output pixels per pass (the passes are written for 4)
# Wide blocks: 7 pixels per pass (each input and weight load serves more multiply-adds: 1.2-1.3x
# faster in cache than 4), used where they compute no more pixels; MobileNet's and EfficientNet's
# rows at 224 x 224 (112, 56, 28, 14, 7) are multiples of 7.
WIDE_PIXELS = 7
# From this many channels: on 32 (MobileNetV2's 112 x 112 x 32 layer) the ring measured 0.93x the
# tiled kernel, whose in-place reads and prefetches suit short channel runs.
ROWS_MIN_CHANNELS = 64


def takes_rows(kernel_shape, sh, sw, out_shape):
    """Whether forward_rows runs this layer: stride 1, a square 3x3 / 5x5 kernel, >= PIXELS columns
    and >= ROWS_MIN_CHANNELS channels."""
    kh, kw = kernel_shape[:2]
    return (sh == 1 and sw == 1 and kh == kw and kw in (3, 5) and out_shape[2] >= PIXELS
            and out_shape[3] >= ROWS_MIN_CHANNELS)


@njit(cache=True, nogil=True, inline="always")
def row3(xf, kf, xb, kb, xc, s0, s1, s2, s3):
    """The 4 sums + one kernel row of 3 taps, for the channel at xf[xb] (weights kf[kb], xc apart).
    (Offsets built by additions, all uint64: LLVM then sees contiguous loads and vectorizes over
    the channels; a product like 3 * xc mixes int64 and uint64 in numba and gives gathers.)"""
    x2 = xc + xc
    x3, x4 = x2 + xc, x2 + x2
    x5 = x4 + xc
    a0, a1, a2, a3, a4, a5 = xf[xb], xf[xb + xc], xf[xb + x2], xf[xb + x3], xf[xb + x4], xf[xb + x5]
    w0, w1, w2 = kf[kb], kf[kb + xc], kf[kb + x2]
    return (s0 + a0 * w0 + a1 * w1 + a2 * w2, s1 + a1 * w0 + a2 * w1 + a3 * w2,
            s2 + a2 * w0 + a3 * w1 + a4 * w2, s3 + a3 * w0 + a4 * w1 + a5 * w2)


@njit(cache=True, nogil=True, inline="always")
def row5(xf, kf, xb, kb, xc, s0, s1, s2, s3):
    """The 4 sums + one kernel row of 5 taps (offsets as row3's)."""
    x2 = xc + xc
    x3, x4 = x2 + xc, x2 + x2
    x5, x6, x7 = x4 + xc, x4 + x2, x4 + x3
    a0, a1, a2, a3 = xf[xb], xf[xb + xc], xf[xb + x2], xf[xb + x3]
    a4, a5, a6, a7 = xf[xb + x4], xf[xb + x5], xf[xb + x6], xf[xb + x7]
    w0, w1, w2, w3, w4 = kf[kb], kf[kb + xc], kf[kb + x2], kf[kb + x3], kf[kb + x4]
    return (s0 + a0 * w0 + a1 * w1 + a2 * w2 + a3 * w3 + a4 * w4,
            s1 + a1 * w0 + a2 * w1 + a3 * w2 + a4 * w3 + a5 * w4,
            s2 + a2 * w0 + a3 * w1 + a4 * w2 + a5 * w3 + a6 * w4,
            s3 + a3 * w0 + a4 * w1 + a5 * w2 + a6 * w3 + a7 * w4)


@njit(cache=True, nogil=True, inline="always")
def _store4(yf, yb, xc, lo, hi, u, s0, s1, s2, s3):
    """The 4 pixels' sums of channel u, clipped, into the output (pixels xc floats apart)."""
    y2 = xc + xc
    yf[yb + u] = min(max(s0, lo), hi)
    yf[yb + xc + u] = min(max(s1, lo), hi)
    yf[yb + y2 + u] = min(max(s2, lo), hi)
    yf[yb + y2 + xc + u] = min(max(s3, lo), hi)


@njit(cache=True, nogil=True, inline="always")
def _window3(rf, kf, bias, yf, yb, b0, b1, b2, xc, m, lo, hi):
    """4 output pixels at yf[yb] = clip(bias + 3x3 window), m channels; kernel row i's padded input
    row starts at rf[bi] (the block's first column)."""
    k1 = xc + xc + xc  # one kernel row of weights
    k2 = k1 + k1
    for q in range(m):
        u = np.uint64(q)
        s = bias[u]
        s0, s1, s2, s3 = row3(rf, kf, b0 + u, u, xc, s, s, s, s)
        s0, s1, s2, s3 = row3(rf, kf, b1 + u, k1 + u, xc, s0, s1, s2, s3)
        s0, s1, s2, s3 = row3(rf, kf, b2 + u, k2 + u, xc, s0, s1, s2, s3)
        _store4(yf, yb, xc, lo, hi, u, s0, s1, s2, s3)


@njit(cache=True, nogil=True, inline="always")
def _window5(rf, kf, bias, yf, yb, b0, b1, b2, b3, b4, xc, m, lo, hi):
    """As _window3, for a 5x5 window."""
    k1 = xc + xc + xc + xc + xc
    k2 = k1 + k1
    k3, k4 = k2 + k1, k2 + k2
    for q in range(m):
        u = np.uint64(q)
        s = bias[u]
        s0, s1, s2, s3 = row5(rf, kf, b0 + u, u, xc, s, s, s, s)
        s0, s1, s2, s3 = row5(rf, kf, b1 + u, k1 + u, xc, s0, s1, s2, s3)
        s0, s1, s2, s3 = row5(rf, kf, b2 + u, k2 + u, xc, s0, s1, s2, s3)
        s0, s1, s2, s3 = row5(rf, kf, b3 + u, k3 + u, xc, s0, s1, s2, s3)
        s0, s1, s2, s3 = row5(rf, kf, b4 + u, k4 + u, xc, s0, s1, s2, s3)
        _store4(yf, yb, xc, lo, hi, u, s0, s1, s2, s3)


@njit(cache=True, nogil=True, inline="always")
def _row3w(xf, kf, xb, kb, xc, s0, s1, s2, s3, s4, s5, s6):
    """The 7 sums of a wide block + one kernel row of 3 taps (offsets as row3's): 9 input columns."""
    x2 = xc + xc
    x3, x4 = x2 + xc, x2 + x2
    x5, x6, x7, x8 = x4 + xc, x4 + x2, x4 + x3, x4 + x4
    a0, a1, a2, a3, a4 = xf[xb], xf[xb + xc], xf[xb + x2], xf[xb + x3], xf[xb + x4]
    a5, a6, a7, a8 = xf[xb + x5], xf[xb + x6], xf[xb + x7], xf[xb + x8]
    w0, w1, w2 = kf[kb], kf[kb + xc], kf[kb + x2]
    return (s0 + a0 * w0 + a1 * w1 + a2 * w2, s1 + a1 * w0 + a2 * w1 + a3 * w2,
            s2 + a2 * w0 + a3 * w1 + a4 * w2, s3 + a3 * w0 + a4 * w1 + a5 * w2,
            s4 + a4 * w0 + a5 * w1 + a6 * w2, s5 + a5 * w0 + a6 * w1 + a7 * w2,
            s6 + a6 * w0 + a7 * w1 + a8 * w2)


@njit(cache=True, nogil=True, inline="always")
def _row5w(xf, kf, xb, kb, xc, s0, s1, s2, s3, s4, s5, s6):
    """The 7 sums of a wide block + one kernel row of 5 taps: 11 input columns."""
    x2 = xc + xc
    x3, x4 = x2 + xc, x2 + x2
    x5, x6, x7, x8 = x4 + xc, x4 + x2, x4 + x3, x4 + x4
    x9, x10 = x8 + xc, x8 + x2
    a0, a1, a2, a3 = xf[xb], xf[xb + xc], xf[xb + x2], xf[xb + x3]
    a4, a5, a6, a7 = xf[xb + x4], xf[xb + x5], xf[xb + x6], xf[xb + x7]
    a8, a9, a10 = xf[xb + x8], xf[xb + x9], xf[xb + x10]
    w0, w1, w2, w3, w4 = kf[kb], kf[kb + xc], kf[kb + x2], kf[kb + x3], kf[kb + x4]
    return (s0 + a0 * w0 + a1 * w1 + a2 * w2 + a3 * w3 + a4 * w4,
            s1 + a1 * w0 + a2 * w1 + a3 * w2 + a4 * w3 + a5 * w4,
            s2 + a2 * w0 + a3 * w1 + a4 * w2 + a5 * w3 + a6 * w4,
            s3 + a3 * w0 + a4 * w1 + a5 * w2 + a6 * w3 + a7 * w4,
            s4 + a4 * w0 + a5 * w1 + a6 * w2 + a7 * w3 + a8 * w4,
            s5 + a5 * w0 + a6 * w1 + a7 * w2 + a8 * w3 + a9 * w4,
            s6 + a6 * w0 + a7 * w1 + a8 * w2 + a9 * w3 + a10 * w4)


@njit(cache=True, nogil=True, inline="always")
def _store7(yf, yb, xc, lo, hi, u, s0, s1, s2, s3, s4, s5, s6):
    """The 7 pixels' sums of channel u, clipped, into the output (pixels xc floats apart)."""
    _store4(yf, yb, xc, lo, hi, u, s0, s1, s2, s3)
    y4 = xc + xc + xc + xc
    y5 = y4 + xc
    yf[yb + y4 + u] = min(max(s4, lo), hi)
    yf[yb + y5 + u] = min(max(s5, lo), hi)
    yf[yb + y5 + xc + u] = min(max(s6, lo), hi)


@njit(cache=True, nogil=True, inline="always")
def _window3w(rf, kf, bias, yf, yb, b0, b1, b2, xc, m, lo, hi):
    """As _window3, for a wide block of 7 pixels."""
    k1 = xc + xc + xc
    k2 = k1 + k1
    for q in range(m):
        u = np.uint64(q)
        s = bias[u]
        s0, s1, s2, s3, s4, s5, s6 = _row3w(rf, kf, b0 + u, u, xc, s, s, s, s, s, s, s)
        s0, s1, s2, s3, s4, s5, s6 = _row3w(rf, kf, b1 + u, k1 + u, xc, s0, s1, s2, s3, s4, s5, s6)
        s0, s1, s2, s3, s4, s5, s6 = _row3w(rf, kf, b2 + u, k2 + u, xc, s0, s1, s2, s3, s4, s5, s6)
        _store7(yf, yb, xc, lo, hi, u, s0, s1, s2, s3, s4, s5, s6)


@njit(cache=True, nogil=True, inline="always")
def _window5w(rf, kf, bias, yf, yb, b0, b1, b2, b3, b4, xc, m, lo, hi):
    """As _window5, for a wide block of 7 pixels."""
    k1 = xc + xc + xc + xc + xc
    k2 = k1 + k1
    k3, k4 = k2 + k1, k2 + k2
    for q in range(m):
        u = np.uint64(q)
        s = bias[u]
        s0, s1, s2, s3, s4, s5, s6 = _row5w(rf, kf, b0 + u, u, xc, s, s, s, s, s, s, s)
        s0, s1, s2, s3, s4, s5, s6 = _row5w(rf, kf, b1 + u, k1 + u, xc, s0, s1, s2, s3, s4, s5, s6)
        s0, s1, s2, s3, s4, s5, s6 = _row5w(rf, kf, b2 + u, k2 + u, xc, s0, s1, s2, s3, s4, s5, s6)
        s0, s1, s2, s3, s4, s5, s6 = _row5w(rf, kf, b3 + u, k3 + u, xc, s0, s1, s2, s3, s4, s5, s6)
        s0, s1, s2, s3, s4, s5, s6 = _row5w(rf, kf, b4 + u, k4 + u, xc, s0, s1, s2, s3, s4, s5, s6)
        _store7(yf, yb, xc, lo, hi, u, s0, s1, s2, s3, s4, s5, s6)


@njit(cache=True, nogil=True, inline="always")
def _fill(xf, rf, shape, n, ii, left, cols, slot_base):
    """The ring slot at rf[slot_base] (a padded row) = input row ii of image n, its first ``cols``
    columns from padded column ``left`` on; zeros when ii is above or below the input. The padding
    columns are zero from the ring's allocation and never written."""
    n_img, h, w, ch = shape
    dst = np.uint64(slot_base + left * ch)
    if 0 <= ii < h:
        src = np.uint64((n * h + ii) * w * ch)
        for e in range(cols * ch):
            rf[dst + np.uint64(e)] = xf[src + np.uint64(e)]
    else:
        for e in range(cols * ch):
            rf[dst + np.uint64(e)] = 0.0


@njit(cache=True, nogil=True, parallel=True, fastmath={"contract"})
def _rows_narrow(x, k, bias, lo, hi, dh, top, left, bands, y, dest, phase, stream):
    """The ring kernel by blocks of PIXELS (4) pixels."""
    n_img, h, w, ch = x.shape
    _, oh, ow, _ = y.shape
    kh, kw, _ = k.shape
    span = (kh - 1) * dh + 1  # input rows one output row reads, top to bottom
    slot = (ow + kw - 1) * ch  # floats of a padded row
    cols = max(0, min(w, ow + kw - 1 - left))  # input columns any window reads
    xf, kf, yf = x.reshape(-1), k.reshape(-1), y.reshape(-1)
    uch = np.uint64(ch)
    for job in prange(n_img * bands):
        n = job // bands
        r0 = oh * (job % bands) // bands
        r1 = oh * (job % bands + 1) // bands
        rf = np.zeros(span * slot, np.float32)
        # padded row t (input row t - top) lives in slot t % span
        for t in range(r0, r0 + span - 1):
            _fill(xf, rf, x.shape, n, t - top, left, cols, t % span * slot)
        for r in range(r0, r1):
            t = r + span - 1  # the one row output row r adds
            _fill(xf, rf, x.shape, n, t - top, left, cols, t % span * slot)
            yrow = (n * oh + r) * ow * ch
            block = numba.get_thread_id() * PIXELS * ch  # this thread's scratch block (streaming)
            for c0 in range(0, ow, PIXELS):
                c = min(c0, ow - PIXELS)
                yb, cb = np.uint64(block if stream else yrow + c * ch), c * ch
                if kw == 3:
                    _window3(rf, kf, bias, dest, yb, np.uint64(r % span * slot + cb),
                             np.uint64((r + dh) % span * slot + cb), np.uint64((r + 2 * dh) % span * slot + cb),
                             uch, ch, lo, hi)
                else:
                    _window5(rf, kf, bias, dest, yb, np.uint64(r % span * slot + cb),
                             np.uint64((r + dh) % span * slot + cb), np.uint64((r + 2 * dh) % span * slot + cb),
                             np.uint64((r + 3 * dh) % span * slot + cb), np.uint64((r + 4 * dh) % span * slot + cb),
                             uch, ch, lo, hi)
                if stream:
                    copy_out(dest, block, yf, yrow + c * ch, PIXELS * ch, phase)
        if stream:
            store_fence()


@njit(cache=True, nogil=True, parallel=True, fastmath={"contract"})
def _rows_wide(x, k, bias, lo, hi, dh, top, left, bands, y, dest, phase, stream):
    """_rows_narrow by blocks of WIDE_PIXELS (7) pixels. (A kernel of its own, written out alike:
    with both block widths' passes in one loop, or with the ring set-up and offsets moved into
    helpers, LLVM left passes scalar, 4-5x slower.)"""
    n_img, h, w, ch = x.shape
    _, oh, ow, _ = y.shape
    kh, kw, _ = k.shape
    span = (kh - 1) * dh + 1
    slot = (ow + kw - 1) * ch
    cols = max(0, min(w, ow + kw - 1 - left))
    xf, kf, yf = x.reshape(-1), k.reshape(-1), y.reshape(-1)
    uch = np.uint64(ch)
    for job in prange(n_img * bands):
        n = job // bands
        r0 = oh * (job % bands) // bands
        r1 = oh * (job % bands + 1) // bands
        rf = np.zeros(span * slot, np.float32)
        for t in range(r0, r0 + span - 1):
            _fill(xf, rf, x.shape, n, t - top, left, cols, t % span * slot)
        for r in range(r0, r1):
            t = r + span - 1
            _fill(xf, rf, x.shape, n, t - top, left, cols, t % span * slot)
            yrow = (n * oh + r) * ow * ch
            block = numba.get_thread_id() * WIDE_PIXELS * ch
            for c0 in range(0, ow, WIDE_PIXELS):
                c = min(c0, ow - WIDE_PIXELS)
                yb, cb = np.uint64(block if stream else yrow + c * ch), c * ch
                if kw == 3:
                    _window3w(rf, kf, bias, dest, yb, np.uint64(r % span * slot + cb),
                              np.uint64((r + dh) % span * slot + cb), np.uint64((r + 2 * dh) % span * slot + cb),
                              uch, ch, lo, hi)
                else:
                    _window5w(rf, kf, bias, dest, yb, np.uint64(r % span * slot + cb),
                              np.uint64((r + dh) % span * slot + cb), np.uint64((r + 2 * dh) % span * slot + cb),
                              np.uint64((r + 3 * dh) % span * slot + cb), np.uint64((r + 4 * dh) % span * slot + cb),
                              uch, ch, lo, hi)
                if stream:
                    copy_out(dest, block, yf, yrow + c * ch, WIDE_PIXELS * ch, phase)
        if stream:
            store_fence()


def wide_blocks(ow):
    """Whether a row of ow output pixels goes by WIDE_PIXELS blocks: when they compute no more
    pixels than PIXELS blocks would (the last block of a row overlaps the one before it)."""
    return ow >= WIDE_PIXELS and -(-ow // WIDE_PIXELS) * WIDE_PIXELS <= -(-ow // PIXELS) * PIXELS


def _forward_rows(x, k, bias, lo, hi, dh, top, left, bands, y):
    """The ring kernel, by the block width that suits y's rows; a large y's blocks are summed into a
    scratch block per thread (in L1) and streamed out (depthwise_stream.py)."""
    wide = wide_blocks(y.shape[2])
    kernel = _rows_wide if wide else _rows_narrow
    yf = y.reshape(-1)
    if streams(y):
        scratch = np.empty(numba.get_num_threads() * (WIDE_PIXELS if wide else PIXELS) * y.shape[3], np.float32)
        kernel(x, k, bias, lo, hi, dh, top, left, bands, y, scratch, y.ctypes.data // 4 % LINE_FLOATS, True)
    else:
        kernel(x, k, bias, lo, hi, dh, top, left, bands, y, yf, 0, False)


def forward_rows(x, k, bias, lo, hi, dh, top, left, y):
    """y = clip(depthwise(x, k) + bias, lo, hi), stride 1, row dilation dh, column dilation 1;
    lo/hi may be -inf/inf. k: (kh, kw, C), square 3x3 or 5x5 (see takes_rows). top/left: the zero
    rows and columns virtually above and left of x (y's shape sets the bottom and right ones)."""
    n_img, oh = y.shape[:2]
    threads = numba.get_num_threads()
    # whole images when each thread gets two or more; else bands of rows (each band re-reads
    # the span - 1 rows above it)
    bands = 1 if n_img >= 2 * threads else min(oh, -(-2 * threads // n_img))
    _forward_rows(x, k, bias, lo, hi, dh, top, left, bands, y)
