"""A 3x3 convolution over an RGB image (MobileNetV2's and EfficientNet's stem, strides 1 or 2) with its
bias (folded BatchNormalization) and clip (ReLU6) applied as each output pixel is written:

    stem_conv(x, w, bias, lo, hi, strides, top, left, y)   # x (N, H, W, 3), w (3, 3, 3, F), y (N, OH, OW, F)
    y = folded_conv(x, w, bias, strides, padding, dilation, clip, out)   # a layer's call; None: not taken

The window of one output pixel is 27 floats (3 rows of 9 contiguous ones), too few for a BLAS
product to run near its peak and costly to gather as im2col patches. Here the 4 sums of 4 adjacent
output pixels stay in registers over all 27 taps while the loop over the output channels is
vectorized: each weight vector loaded serves 4 pixels, each input value is a scalar broadcast.
Each output row copies the input rows its windows read into a zero-bordered buffer first (about
2 K floats against ~200 K multiply-adds of the row), so no tap is checked against the borders.
Rows of output are jobs shared by tlkit's threads (conv_chunks.by_jobs); nothing is stored but y.

Where gemm_blocks takes a (27, F) product (PRODUCTS), the rows go another way, faster on one thread
(AMD EPYC, AVX-512: MobileNetV2's stem, 224x224 -> 112x112x32, 0.60 -> ~0.3 ms): the windows of a few
output rows are gathered as 27-float patches (3 runs of 9 contiguous floats each, in L2), then one
register-blocked product with the bias and clip fused writes the rows (BENCHMARKS.md, issue 20).
"""
import numba
import numpy as np
from numba import njit

from tlkit.engine.kernels import conv_chunks, gemm_blocks
from tlkit.engine.kernels.geometry import conv_output_shape, pads
from tlkit.engine.kernels.im2col import rgb3x3_patches
from tlkit.engine.kernels.intrinsics import stack_floats

__all__ = ["StemRows", "applicable", "folded_conv", "stem_conv"]

# False sends folded convs to conv.py's routes (tests and A/B scripts take both sides).
ENABLED = True
PIXELS = 4  # adjacent output pixels per pass (the pass below is written for 4)
CHANNELS = 64  # output channels per pass
LANES = 16  # w and bias padded to a multiple of LANES channels
SUMS = PIXELS * CHANNELS
# False: the direct kernel for every stem (A/B scripts); True: patches + gemm_blocks where it takes them.
PRODUCTS = True
# Bytes of the patches of one product (a few output rows): they stay in L2 with the rows they give.
PATCH_BYTES = 128 << 10
_C1, _C2, _C3 = np.uint64(CHANNELS), np.uint64(2 * CHANNELS), np.uint64(3 * CHANNELS)  # pixel offsets in the sums


def applicable(kernel_shape, strides, dilation):
    """Whether stem_conv computes this conv: a 3x3 kernel over 3 channels, strides 1 or 2 (each
    direction), no dilation."""
    return (tuple(kernel_shape[:3]) == (3, 3, 3) and tuple(dilation) == (1, 1)
            and all(s in (1, 2) for s in strides))



@njit(cache=True, nogil=True, inline="always")
def _row_taps(bf, wf, b0, d, wb, nf, f, s0, s1, s2, s3):
    """The 4 sums + one kernel row (9 taps: 3 columns x 3 channels, contiguous) for output channel f:
    pixel p's taps at bf[b0 + p * d:][:9], the weights of kernel row wb at wf[(wb + t) * nf + f]
    (unsigned offsets: no negative-index fix-ups, so the weight loads stay contiguous vectors)."""
    for t in range(9):
        u = np.uint64(t)
        wv = wf[(wb + u) * nf + f]
        s0 += bf[b0 + u] * wv
        s1 += bf[b0 + d + u] * wv
        s2 += bf[b0 + d + d + u] * wv
        s3 += bf[b0 + d + d + d + u] * wv
    return s0, s1, s2, s3


@njit(cache=True, nogil=True, fastmath={"contract"})
def _stem_rows(x, w, bias, lo, hi, sh, sw, top, left, y, job0, job1):
    """Output rows job0:job1 (job = image * OH + row) of y = clip(conv3x3(x, w) + bias, lo, hi);
    w as (27, F), rows ordered (kernel row, kernel column, channel)."""
    n_img, h, wd, _ = x.shape
    _, oh, ow, nf_out = y.shape
    nf = w.shape[1]  # nf_out padded to a multiple of LANES
    blocks = -(-ow // PIXELS)
    span = ((blocks * PIXELS - 1) * sw + 3) * 3  # floats of one zero-bordered input row
    buf = np.zeros((3, span), np.float32)
    bf = buf.reshape(-1)
    uspan, d = np.uint64(span), np.uint64(3 * sw)
    acc = numba.carray(stack_floats(SUMS), SUMS)
    wf, unf, yf = w.reshape(-1), np.uint64(nf), y.reshape(-1)
    for job in range(job0, job1):
        n, r = job // oh, job % oh
        for i in range(3):
            ii = r * sh - top + i
            for jj in range(span // 3):
                col = jj - left
                inside = 0 <= ii < h and 0 <= col < wd
                for c in range(3):
                    buf[i, jj * 3 + c] = x[n, ii, col, c] if inside else np.float32(0)
        for blk in range(blocks):
            c0 = blk * PIXELS
            b0 = np.uint64(c0 * sw * 3)
            m = min(PIXELS, ow - c0)
            for f0 in range(0, nf, CHANNELS):
                fm = min(CHANNELS, nf - f0)
                uf0 = np.uint64(f0)
                for q in range(fm):
                    u = np.uint64(q)
                    f = uf0 + u
                    s = bias[f]
                    s0, s1, s2, s3 = _row_taps(bf, wf, b0, d, np.uint64(0), unf, f, s, s, s, s)
                    s0, s1, s2, s3 = _row_taps(bf, wf, b0 + uspan, d, np.uint64(9), unf, f, s0, s1, s2, s3)
                    s0, s1, s2, s3 = _row_taps(bf, wf, b0 + uspan + uspan, d, np.uint64(18), unf, f, s0, s1, s2, s3)
                    acc[u], acc[_C1 + u], acc[_C2 + u], acc[_C3 + u] = s0, s1, s2, s3
                fo = min(fm, nf_out - f0)
                for p in range(m):
                    yb = np.uint64(((n * oh + r) * ow + c0 + p) * nf_out + f0)
                    ab = np.uint64(p * CHANNELS)
                    for q in range(fo):
                        u = np.uint64(q)
                        yf[yb + u] = min(max(acc[ab + u], lo), hi)


class StemRows:
    """The conv's weights, ready for stem_conv's rows: ``rows(x, n0, n1, a, b, dest)`` writes output rows
    a:b of images n0:n1 into dest (n1 - n0, b - a, OW, F) on the calling thread (an inverted-residual
    block fused with the stem computes its expanded rows so, band by band: kernels/mbconv_bands.py)."""

    def __init__(self, w, bias, lo, hi, strides, top, left, out_hw=None):
        f = w.shape[3]
        padded = -(-f // LANES) * LANES
        self.w = np.zeros((27, padded), np.float32)
        self.w[:, :f] = np.reshape(w, (27, f))
        self.bias = np.zeros(padded, np.float32)
        if bias is not None:
            self.bias[:f] = bias
        self.lo, self.hi = np.float32(lo), np.float32(hi)
        self.strides, self.top, self.left, self.filters = tuple(strides), top, left, f
        self.out_hw = None if out_hw is None else tuple(out_hw)
        self.packed = gemm_blocks.pack(self.w[:, :f], self.bias[:f]) if gemm_blocks.worth_it(27, f) else None

    def output_shape(self, x_shape):
        """(N, OH, OW, F) of the conv over an input of x_shape (OH, OW as given at construction)."""
        return (x_shape[0],) + self.out_hw + (self.filters,)

    def rows(self, x, n0, n1, a, b, dest):
        sh, sw = self.strides
        if PRODUCTS and self.packed is not None and dest.flags.c_contiguous:
            ow = dest.shape[2]
            per = max(1, PATCH_BYTES // (27 * 4 * ow))  # output rows of one product
            patches = np.empty((per * ow, 27), np.float32)
            d2, q = dest.reshape(-1, self.filters), 0
            for n in range(n0, n1):
                for r in range(a, b, per):
                    m = (min(r + per, b) - r) * ow
                    rgb3x3_patches(x, sh, sw, self.top, self.left, n, r, min(r + per, b), ow, patches)
                    gemm_blocks.product_epilogue(patches[:m], self.packed, d2[q:q + m], None, self.lo, self.hi)
                    q += m
            return
        _stem_rows(x[n0:n1], self.w, self.bias, self.lo, self.hi, sh, sw, self.top - a * sh, self.left, dest, 0,
                   (n1 - n0) * (b - a))


def stem_conv(x, w, bias, lo, hi, strides, top, left, y):
    """y = clip(conv(x, w) + bias, lo, hi) (see the module's docstring); lo/hi float32 (-inf / inf:
    no bound); top/left the zero rows and columns before x (y's shape sets the bottom and right ones).
    x, y C-contiguous float32. Returns y."""
    stem = StemRows(w, bias, lo, hi, strides, top, left)
    if PRODUCTS and stem.packed is not None:
        oh = y.shape[1]

        def jobs(j0, j1):  # output rows j0:j1 (job = image * OH + row), image by image
            for n in range(j0 // oh, (j1 - 1) // oh + 1):
                a, b = max(j0 - n * oh, 0), min(j1 - n * oh, oh)
                stem.rows(x, n, n + 1, a, b, y[n:n + 1, a:b])
        conv_chunks.by_jobs(y.shape[0] * oh, jobs)
        return y
    conv_chunks.by_jobs(y.shape[0] * y.shape[1], lambda j0, j1: _stem_rows(
        x, stem.w, stem.bias, stem.lo, stem.hi, *stem.strides, top, left, y, j0, j1))
    return y


def folded_conv(x, w, bias, strides, padding, dilation, clip, out=None):
    """clip(conv(x, w) + bias) through stem_conv for a Conv2D's folded kernel (strides, padding,
    dilation as the layer's; clip (low, high) with None for no bound, or None), into ``out`` (a
    C-contiguous float32 array of the output's shape) or a new array; None when this kernel does not
    take the conv (see applicable), and the caller's route runs instead."""
    if (not ENABLED or not applicable(w.shape, strides, dilation) or not isinstance(x, np.ndarray) or x.ndim != 4
            or x.dtype != np.float32 or not x.flags.c_contiguous):
        return None
    oh, ow = conv_output_shape(x.shape[1:3], (3, 3), strides, padding)
    shape = (x.shape[0], oh, ow, w.shape[3])
    if min(shape) < 1 or (out is not None and (out.shape != shape or out.dtype != np.float32
                                               or not out.flags.c_contiguous)):
        return None
    y = np.empty(shape, np.float32) if out is None else out
    low, high = clip if clip is not None else (None, None)
    top, left = pads(x.shape[1], 3, strides[0], padding)[0], pads(x.shape[2], 3, strides[1], padding)[0]
    b = np.zeros(shape[3], np.float32) if bias is None else bias
    return stem_conv(x, w, b, -np.inf if low is None else low, np.inf if high is None else high, strides, top,
                     left, y)
