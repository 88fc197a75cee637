"""A small-window convolution and the max pooling after it (SqueezeNet's conv1 + pool1), band by
band through BLAS: for a band of pooled rows of one image, the conv rows it needs are gathered
into a patch matrix (im2col), multiplied by the kernel in one BLAS call, and max-pooled while
they are in cache; bias and ReLU come after the pooling, on a quarter of the values (both commute
with a max: the bias is per channel and ReLU is monotone). Bands are chunks shared by the
threads (tlkit.utils.threads.run_chunks).

    conv_maxpool_bands(x, wmat, bias, True, True, (3, 3, 2, 2, 1, 1), 0, 0, (111, 111),
                       (3, 3), (2, 2), (0, 0), y)        # y: (N, PH, PW, F) C-contiguous

Why: the direct kernel (direct_conv.py) accumulates in L1, not in registers, and reaches about
half of what BLAS does on the same thin product (K = 27); the band's patch matrix and product
stay in the core's caches. Where gemm_blocks takes the (K, F) product (PRODUCTS), its register-blocked
kernel runs it instead of BLAS, and a 3x3 window over 3 channels is gathered by im2col.rgb3x3_patches
(SqueezeNet's conv1 + pool1 at batch 1 on one thread: 1.07 -> ~0.9 ms; BENCHMARKS.md, issue 20).
"""
import numpy as np
from numba import njit

from tlkit.engine.kernels import direct_conv, gemm_blocks, jobs
from tlkit.engine.kernels.im2col import im2col_rows, rgb3x3_patches
from tlkit.engine.kernels.pool import _window
from tlkit.utils import threads, worker_pool

# Patch matrix + conv rows of one band: 1-4 MB ran best on SqueezeNet conv1 (2-core EPYC, 1 MB L2
# per core, batch 1 and 32); smaller bands pay more per-band overhead and recomputed rows.
BAND_BYTES = 2 << 20
# Fewer filters than this keep the direct kernel: BLAS is weak on products that narrow.
MIN_FILTERS = 32
# False: BLAS and im2col_rows for every band (A/B scripts).
PRODUCTS = True


def preferred(filters, dilation):
    return filters >= MIN_FILTERS and tuple(dilation) == (1, 1)


def takes(kernel_shape, dilation):
    """Whether conv.conv2d_maxpool_forward runs a conv + max pool that Winograd does not pool as bands here."""
    return direct_conv.applicable(kernel_shape, dilation, pooled=True) and preferred(kernel_shape[3], dilation)


@njit(cache=True, nogil=True)
def pool_band_bias_relu(conv, r0, oh, ph, pw, psh, psw, ptop, pleft, p0, bias, has_bias, relu, y):
    """y[i] = ReLU(max-pool(conv rows) + bias) for pooled rows p0 + i; conv: (rows, OW, F), the
    conv rows r0 .. r0 + rows of an (OH, ...) conv output; y: (rows pooled, PW, F).

    Rows first (the max over a window's conv rows into one row), then columns; plain 3-D indexing
    with the channel counter innermost, so every pass vectorizes over F and no view is made per
    pixel (a view a pooled column cost more than its maxima)."""
    _, ow, f = conv.shape
    rows_max = np.empty((ow, f), np.float32)
    zero = np.float32(0)  # not a 0.0 literal: v would become a float64
    for i in range(y.shape[0]):
        h0, h1 = _window(p0 + i, psh, ptop, ph, oh)
        first = h0 - r0
        for c in range(ow):
            for q in range(f):
                rows_max[c, q] = conv[first, c, q]
        for r in range(h0 + 1, h1):
            row = r - r0
            for c in range(ow):
                for q in range(f):
                    m = rows_max[c, q]
                    v = conv[row, c, q]
                    rows_max[c, q] = v if v > m else m
        for c in range(y.shape[1]):
            w0, w1 = _window(c, psw, pleft, pw, ow)
            for q in range(f):
                y[i, c, q] = rows_max[w0, q]
            for j in range(w0 + 1, w1):
                for q in range(f):
                    m = y[i, c, q]
                    v = rows_max[j, q]
                    y[i, c, q] = v if v > m else m
            if has_bias or relu:
                for q in range(f):
                    v = y[i, c, q]
                    if has_bias:
                        v += bias[q]
                    if relu and v < zero:
                        v = zero
                    y[i, c, q] = v


def conv_maxpool_bands(x, wmat, bias, has_bias, relu, window, pad_top, pad_left, conv_hw, pool, pool_strides,
                       pool_pads, y, packed=None, scratch=None):
    """y = max_pool(ReLU(conv(x) + bias)) band by band. x: (N, H, W, C) C-contiguous; wmat:
    (kh * kw * C, F) C-contiguous; window: (kh, kw, sh, sw, dh, dw); conv_hw: the conv output's
    (OH, OW); pool / pool_strides / pool_pads: (ph, pw), (psh, psw), (top, left) of the pooling.
    packed: ``gemm_blocks.pack(wmat)`` if kept (else packed here when gemm_blocks takes the product);
    scratch: a dict the caller keeps between calls of the same shapes on one thread (the bands' patch
    and conv rows per thread slot: no fresh pages per call), else a new one."""
    n = x.shape[0]
    oh, ow = conv_hw
    (ph, pw), (psh, psw), (ptop, pleft) = pool, pool_strides, pool_pads
    p_rows = y.shape[1]
    k, f = wmat.shape
    parts = max(threads.num_threads(), 1)
    conv_rows = max(ph, BAND_BYTES // (ow * (k + f) * 4))
    per = max(1, (conv_rows - ph) // psh + 1)
    per = min(per, max(1, -(-n * p_rows // (parts * threads.chunks_per_thread()))))  # enough bands to share
    native = parts == 2 and n == 1 and worker_pool.serves_jobs() and threads.chunks_can_run_numba()
    if native:  # an even count of bands: half of them a native job for the worker (kernels/jobs.py)
        per = -(-p_rows // (2 * -(-p_rows // (2 * per))))
    bands = [(img, p0, min(p0 + per, p_rows)) for img in range(n) for p0 in range(0, p_rows, per)]
    most = (per - 1) * psh + ph
    scratch = {} if scratch is None else scratch  # (patches, conv rows) per thread slot
    if packed is None and PRODUCTS and gemm_blocks.worth_it(k, f):
        packed = gemm_blocks.pack(wmat)
    rgb = PRODUCTS and tuple(window) == (3, 3, window[2], window[3], 1, 1) and x.shape[3] == 3

    def band(slot, i, j):
        for b in range(i, j):
            one_band(slot, b)

    def one_band(slot, i):
        img, p0, p1 = bands[i]
        r0 = max(p0 * psh - ptop, 0)
        r1 = min((p1 - 1) * psh - ptop + ph, oh)
        if slot not in scratch or scratch[slot][1].shape != (most, ow, f):
            scratch[slot] = (np.empty((most * ow, k), np.float32), np.empty((most, ow, f), np.float32))
        patches, conv = scratch[slot]
        m = (r1 - r0) * ow
        if rgb:
            rgb3x3_patches(x, window[2], window[3], pad_top, pad_left, img, r0, r1, ow, patches)
        else:
            im2col_rows(x, img, img + 1, r0, r1, *window, pad_top, pad_left, ow, patches)
        if packed is not None:
            gemm_blocks.product_epilogue(patches[:m], packed, conv.reshape(-1, f)[:m])
        else:
            threads.product(patches[:m], wmat, conv.reshape(-1, f)[:m])
        pool_band_bias_relu(conv[:r1 - r0], r0, oh, ph, pw, psh, psw, ptop, pleft, p0, bias, has_bias, relu,
                            y[img, p0:p1])

    threads.limit_blas()
    if native:
        band.native = jobs.bands_poster((im2col_rows, pool_band_bias_relu), x, wmat, bias, has_bias, relu, window,
                                        pad_top, pad_left, conv_hw, pool, pool_strides, pool_pads, y, per, most)
        threads.run_chunks([0, len(bands) // 2, len(bands)], band, parts)
        return y
    threads.run_chunks(range(len(bands) + 1), band, parts)
    return y
