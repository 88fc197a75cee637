"""The numba passes of the tiled im2col convolution (conv.py): gather a tile's input windows into
a patch matrix, add bias and ReLU on the product's tile, and scatter patch gradients back
(col2im). Each parallel job owns whole rows of its output, so no two threads write one value."""
import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True, parallel=True)
def im2col_rows(x, n0, n1, r0, r1, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_w, patches):
    """patches[((n - n0) * (r1 - r0) + r - r0) * out_w + c] = flattened (kh, kw, C) window of
    output pixel (n, r, c), zeros where it hangs over the (implicitly padded) border."""
    _, h, w, ch = x.shape
    k_total = kh * kw * ch
    run = kw * ch  # with dilation 1, one kernel row's taps are one contiguous run of x
    xf = x.reshape(-1)
    pf = patches.reshape(-1)
    rows = r1 - r0
    for job in prange((n1 - n0) * rows):
        n = n0 + job // rows
        r = r0 + job % rows
        base = job * out_w * k_total
        for i in range(kh):
            ih = r * sh + i * dh - pad_top
            for c in range(out_w):
                dst = base + c * k_total + i * run
                iw0 = c * sw - pad_left
                if ih < 0 or ih >= h:
                    pf[dst:dst + run] = 0.0
                elif dw == 1 and iw0 >= 0 and iw0 + kw <= w:
                    src = ((n * h + ih) * w + iw0) * ch
                    pf[dst:dst + run] = xf[src:src + run]
                else:
                    for j in range(kw):
                        iw = iw0 + j * dw
                        d = dst + j * ch
                        if 0 <= iw < w:
                            src = ((n * h + ih) * w + iw) * ch
                            pf[d:d + ch] = xf[src:src + ch]
                        else:
                            pf[d:d + ch] = 0.0


@njit(cache=True, nogil=True)
def rgb3x3_patches(x, sh, sw, top, left, n, r0, r1, ow, p):
    """im2col_rows for a 3x3 window over 3 channels (an RGB stem), rows r0:r1 of image n, dilation 1:
    p[(r - r0) * ow + c] = the 27 taps of output pixel (n, r, c), ordered (kernel row, column, channel),
    zeros outside x (C-contiguous (N, H, W, 3)); top / left: zero rows / columns before x. Copying a
    window's 3 runs of 9 floats by index beats im2col_rows' slice copies (0.18 vs 0.25 ms for a
    224x224 stride-2 stem on one thread). Offsets are uint64: no negative-index fix-ups in the copies
    (10 rows of a 224x224 stride-2 stem: 13.4 -> 6.8 us on an Intel Xeon, one thread)."""
    _, h, w, _ = x.shape
    xf, pf = x.reshape(-1), p.reshape(-1)
    q = np.uint64(0)
    for r in range(r0, r1):
        for c in range(ow):
            iw0 = c * sw - left
            for i in range(3):
                ih = r * sh - top + i
                base = q + np.uint64(9 * i)
                if 0 <= ih < h and 0 <= iw0 and iw0 + 3 <= w:
                    src = np.uint64(((n * h + ih) * w + iw0) * 3)
                    for t in range(9):
                        u = np.uint64(t)
                        pf[base + u] = xf[src + u]
                else:
                    for j in range(3):
                        iw = iw0 + j
                        inside = 0 <= ih < h and 0 <= iw < w
                        for ch in range(3):
                            pf[base + np.uint64(3 * j + ch)] = (xf[((n * h + ih) * w + iw) * 3 + ch] if inside
                                                                else np.float32(0))
            q += np.uint64(27)


@njit(cache=True, nogil=True)
def add_bias_relu(y, b, has_bias, relu, lo=0):
    """In place on columns [lo, lo + len(b)) of a (rows, columns) block: y += b; y = max(y, 0).
    Serial: its callers run it on each chunk of a product, on the thread that computed it."""
    rows, f = y.shape[0], b.shape[0]
    zero = np.float32(0)  # not a 0.0 literal: v would become a float64, half the lanes per vector
    for i in range(rows):
        row = y[i, lo:lo + f]  # a contiguous slice of a C-contiguous block vectorizes; a strided view would not
        for j in range(f):
            v = row[j]
            if has_bias:
                v += b[j]
            if relu and v < zero:
                v = zero
            row[j] = v


@njit(cache=True, nogil=True, parallel=True)
def col2im_rows(dpatches, n0, n1, r0, r1, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_w, dx):
    """Adjoint of im2col_rows: dx += the patches' gradients at the pixels they were read from.

    Parallel over input rows (each thread owns whole dx rows, so no write races), gathering from
    every (output row, kernel row) pair that reads the row.
    """
    _, h, w, ch = dx.shape
    rows = r1 - r0
    lo = max(r0 * sh - pad_top, 0)
    hi = min((r1 - 1) * sh - pad_top + (kh - 1) * dh + 1, h)
    span = max(hi - lo, 0)
    for job in prange((n1 - n0) * span):
        n = n0 + job // span
        ih = lo + job % span
        for i in range(kh):
            t = ih + pad_top - i * dh
            if t < 0 or t % sh != 0:
                continue
            r = t // sh
            if r < r0 or r >= r1:
                continue
            base = ((n - n0) * rows + r - r0) * out_w
            for c in range(out_w):
                p = dpatches[base + c]
                for j in range(kw):
                    iw = c * sw + j * dw - pad_left
                    if 0 <= iw < w:
                        k = (i * kw + j) * ch
                        for q in range(ch):
                            dx[n, ih, iw, q] += p[k + q]
