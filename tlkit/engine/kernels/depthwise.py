"""Depthwise 2-D convolution (NHWC): forward, input gradient and kernel gradient.

    y = depthwise_forward(x, kernel, (1, 1), "same")          # kernel (kh, kw, C, M) -> y (N, OH, OW, C*M)
    y = depthwise_forward(x, kernel, (2, 2), "same", bias=b, clip=(0.0, 6.0), out=buf)  # + b, ReLU6, into buf
    dx = depthwise_backward_input(dy, kernel, x.shape, (1, 1), "same")
    dk = depthwise_backward_kernel(x, dy, kernel.shape, (1, 1), "same")

Output channel c*M + m is input channel c times kernel[..., c, m] (TF/Keras's order). A channel
multiplier M > 1 repeats each input channel M times first, so every loop below runs over one
contiguous run of channels (the shape that vectorizes). Padding is TF's: the odd pixel of 'same'
goes at the bottom/right. One output (or, for the input gradient, input) row of one image is
one parallel job; the kernel gradient sums per-thread partials. Most layers of 16 channels or
more (stride 1, and stride 2 with 3x3 / 5x5 kernels) run the tiled kernel of depthwise_tiles.py
instead. The forward starts each output
pixel from the bias and clips it once its taps are summed, so a folded BatchNormalization and a
ReLU/ReLU6 cost no extra pass over the output.
"""
import numba
import numpy as np
from numba import njit, prange

from tlkit.engine.kernels.depthwise_tiles import forward_tiles
from tlkit.engine.kernels.geometry import conv_output_shape, pads

__all__ = ["depthwise_forward", "depthwise_backward_input", "depthwise_backward_kernel"]

# Output floats per block of the stride-1 row kernel: with its input and weight runs, small enough
# for an L1 cache. It is used up to ROW_KERNEL_MAX_CHANNELS channels: with more, the per-pixel
# kernel's channel loop is already long enough to vectorize, and measured as fast or faster.
BLOCK_FLOATS = 1024
ROW_KERNEL_MAX_CHANNELS = 64
# Stride 1 with column dilation 1 and from this many output channels (a float32 vector's worth) runs
# the tiled kernel (depthwise_tiles.py), measured 1.3-1.6x faster than both kernels here on
# MobileNet-sized layers; fewer channels keep the row kernel, which vectorizes across pixels.
TILES_MIN_CHANNELS = 16


@njit(cache=True, nogil=True, parallel=True)
def _forward(x, k, bias, lo, hi, sh, sw, dh, dw, top, left, y):
    """y = clip(depthwise(x, k) + bias, lo, hi); lo/hi may be -inf/inf."""
    n_img, h, w, ch = x.shape
    _, oh, ow, _ = y.shape
    kh, kw, _ = k.shape
    for job in prange(n_img * oh):
        n = job // oh
        r = job % oh
        for c in range(ow):
            out = y[n, r, c]
            out[:] = bias
            for i in range(kh):
                ii = r * sh - top + i * dh
                if ii < 0 or ii >= h:
                    continue
                for j in range(kw):
                    jj = c * sw - left + j * dw
                    if jj < 0 or jj >= w:
                        continue
                    src = x[n, ii, jj]
                    kij = k[i, j]
                    for q in range(ch):
                        out[q] += src[q] * kij[q]
            for q in range(ch):
                out[q] = min(max(out[q], lo), hi)


@njit(cache=True, nogil=True, parallel=True)
def _forward_stride1(x, k_rows, bias_row, lo, hi, dh, dw, top, left, block, y):
    """Stride 1: ``block`` output columns of one row are (block * C) contiguous floats and, for one
    tap, read a contiguous run of an input row, so each tap is one long multiply-add (``k_rows``:
    each tap's channel weights repeated OW times, ``bias_row`` the bias likewise) that vectorizes
    fully, on a block small enough to stay in L1 across the taps."""
    n_img, h, w, ch = x.shape
    _, oh, ow, _ = y.shape
    kh, kw, _ = k_rows.shape
    x_rows = x.reshape(n_img, h, w * ch)
    y_rows = y.reshape(n_img, oh, ow * ch)
    blocks = (ow + block - 1) // block
    for job in prange(n_img * oh * blocks):
        n = job // (oh * blocks)
        r = job // blocks % oh
        b0 = job % blocks * block
        b1 = min(b0 + block, ow)
        out = y_rows[n, r, b0 * ch:b1 * ch]
        out[:] = bias_row[b0 * ch:b1 * ch]
        for i in range(kh):
            ii = r - top + i * dh
            if ii < 0 or ii >= h:
                continue
            src = x_rows[n, ii]
            for j in range(kw):
                shift = j * dw - left  # output column c reads input column c + shift
                c0 = max(b0, -shift)
                c1 = min(b1, w - shift)
                if c1 <= c0:
                    continue
                # slices, so every index below is a plain loop counter: no negative-index checks
                o = out[(c0 - b0) * ch:(c1 - b0) * ch]
                a = src[(c0 + shift) * ch:(c1 + shift) * ch]
                kij = k_rows[i, j, c0 * ch:c1 * ch]
                for p in range(o.shape[0]):
                    o[p] += a[p] * kij[p]
        for p in range(out.shape[0]):
            out[p] = min(max(out[p], lo), hi)


@njit(cache=True, nogil=True, parallel=True)
def _backward_input(dy, k, sh, sw, dh, dw, top, left, dx):
    n_img, h, w, ch = dx.shape
    _, oh, ow, _ = dy.shape
    kh, kw, _ = k.shape
    for job in prange(n_img * h):
        n = job // h
        ii = job % h
        for jj in range(w):
            acc = dx[n, ii, jj]
            acc[:] = 0.0
            for i in range(kh):
                rs = ii + top - i * dh  # = r * sh for the output row that reads (ii, jj) through tap i
                if rs < 0 or rs % sh:
                    continue
                r = rs // sh
                if r >= oh:
                    continue
                for j in range(kw):
                    cs = jj + left - j * dw
                    if cs < 0 or cs % sw:
                        continue
                    c = cs // sw
                    if c >= ow:
                        continue
                    g = dy[n, r, c]
                    kij = k[i, j]
                    for q in range(ch):
                        acc[q] += g[q] * kij[q]


@njit(cache=True, nogil=True, parallel=True)
def _backward_kernel(x, dy, sh, sw, dh, dw, top, left, partial):
    n_img, h, w, ch = x.shape
    _, oh, ow, _ = dy.shape
    threads, kh, kw, _ = partial.shape
    jobs = n_img * oh
    for t in prange(threads):
        part = partial[t]
        part[...] = 0.0
        for job in range(t, jobs, threads):
            n = job // oh
            r = job % oh
            for i in range(kh):
                ii = r * sh - top + i * dh
                if ii < 0 or ii >= h:
                    continue
                for c in range(ow):
                    g = dy[n, r, c]
                    for j in range(kw):
                        jj = c * sw - left + j * dw
                        if jj < 0 or jj >= w:
                            continue
                        src = x[n, ii, jj]
                        acc = part[i, j]
                        for q in range(ch):
                            acc[q] += src[q] * g[q]


def _geometry(in_hw, kernel_hw, strides, padding, dilation):
    (oh, ow) = conv_output_shape(in_hw, kernel_hw, strides, padding, dilation)
    top = pads(in_hw[0], kernel_hw[0], strides[0], padding, dilation[0])[0]
    left = pads(in_hw[1], kernel_hw[1], strides[1], padding, dilation[1])[0]
    return oh, ow, top, left


def _repeat(x, multiplier):
    x = np.ascontiguousarray(x, np.float32)
    return x if multiplier == 1 else np.repeat(x, multiplier, axis=-1)


def _flat_kernel(kernel):
    kh, kw, ch, m = kernel.shape
    return np.ascontiguousarray(kernel, np.float32).reshape(kh, kw, ch * m)


def _tiled(kernel_shape, strides, dilation):
    """Whether the tiled kernel (depthwise_tiles.py) runs this layer: >= TILES_MIN_CHANNELS channels,
    column dilation 1, column stride 1, or 2 with a square 3x3 / 5x5 kernel (any row stride)."""
    kh, kw, ch, m = kernel_shape
    column_stride_ok = strides[1] == 1 or (strides[1] == 2 and kh == kw and kw in (3, 5))
    return ch * m >= TILES_MIN_CHANNELS and dilation[1] == 1 and column_stride_ok


def depthwise_forward(x, kernel, strides, padding, dilation=(1, 1), bias=None, clip=None, out=None,
                      zero_pads=None):
    """y (N, OH, OW, C*M) = clip(depthwise(x, kernel) + bias, *clip). bias: (C*M,) or None; clip:
    (low, high) with None for no bound, or None; out: optional C-contiguous float32 array of y's shape.
    zero_pads: ((top, bottom), (left, right)) zeros around x before a 'valid' conv, as a ZeroPadding2D
    would add them, read in place (the kernels skip taps outside x): no padded copy."""
    kh, kw, ch, m = kernel.shape
    if zero_pads is None:
        oh, ow, top, left = _geometry(x.shape[1:3], (kh, kw), strides, padding, dilation)
    else:
        (top, bottom), (left, right) = zero_pads
        padded = (x.shape[1] + top + bottom, x.shape[2] + left + right)
        oh, ow = conv_output_shape(padded, (kh, kw), strides, "valid", dilation)
    shape = (x.shape[0], oh, ow, ch * m)
    if out is not None and (out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous):
        raise ValueError(f"depthwise_forward: out must be a C-contiguous float32 array of shape {shape}, "
                         f"got {out.dtype} {out.shape}.")
    y = np.empty(shape, np.float32) if out is None else out
    b = np.zeros(ch * m, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32).reshape(ch * m)
    low, high = (None, None) if clip is None else clip
    lo, hi = np.float32(-np.inf if low is None else low), np.float32(np.inf if high is None else high)
    if _tiled(kernel.shape, strides, dilation):
        forward_tiles(_repeat(x, m), _flat_kernel(kernel), b, lo, hi, strides[0], strides[1], dilation[0], top,
                      left, y)
    elif tuple(strides) == (1, 1) and ch * m <= ROW_KERNEL_MAX_CHANNELS:
        block = max(1, BLOCK_FLOATS // (ch * m))
        _forward_stride1(_repeat(x, m), np.tile(_flat_kernel(kernel), (1, 1, ow)), np.tile(b, ow), lo, hi,
                         dilation[0], dilation[1], top, left, block, y)
    else:
        _forward(_repeat(x, m), _flat_kernel(kernel), b, lo, hi, strides[0], strides[1], dilation[0], dilation[1],
                 top, left, y)
    return y


def depthwise_backward_input(dy, kernel, x_shape, strides, padding, dilation=(1, 1)):
    kh, kw, ch, m = kernel.shape
    _, _, top, left = _geometry(x_shape[1:3], (kh, kw), strides, padding, dilation)
    dx = np.empty(tuple(x_shape[:3]) + (ch * m,), np.float32)
    _backward_input(np.ascontiguousarray(dy, np.float32), _flat_kernel(kernel), strides[0], strides[1], dilation[0],
                    dilation[1], top, left, dx)
    return dx if m == 1 else dx.reshape(tuple(x_shape[:3]) + (ch, m)).sum(axis=-1)


def depthwise_backward_kernel(x, dy, kernel_shape, strides, padding, dilation=(1, 1)):
    kh, kw, ch, m = kernel_shape
    _, _, top, left = _geometry(x.shape[1:3], (kh, kw), strides, padding, dilation)
    threads = max(1, min(numba.get_num_threads(), x.shape[0] * dy.shape[1]))
    partial = np.empty((threads, kh, kw, ch * m), np.float32)
    _backward_kernel(_repeat(x, m), np.ascontiguousarray(dy, np.float32), strides[0], strides[1], dilation[0],
                     dilation[1], top, left, partial)
    return partial.sum(axis=0).reshape(kernel_shape)
