"""Direct convolution for small windows (K = kh * kw * C small, e.g. a network's first RGB layer),
with bias + ReLU applied before the store, and optionally max pooling fused in.

    wk = w.reshape(-1, F)                    # (K, F) C-contiguous, rows ordered (i, j, c) like Keras
    conv_bias_relu(x, wk, b, True, 3, 3, 2, 2, 0, 0, y, 0)                 # y: (N, OH, OW, >= F)
    conv_bias_relu_maxpool(x, wk, b, True, 3, 3, 2, 2, 0, 0, (oh, ow),
                           3, 3, 2, 2, 0, 0, parts, pooled)                # pooled: (N, PH, PW, F)

Why: with K = 27 (3x3 over RGB) im2col + BLAS is a very thin product, then a second pass adds
bias/ReLU and a third (the pool) reads the whole output back from memory. Here every output
pixel's F filters are accumulated in one contiguous vector (filters innermost, so LLVM
vectorizes over them), and the fused kernel keeps only the few conv rows a pooled row needs (a
ring of pool-height rows per job, reused by the next pooled row of the same image).

Each job first copies the kh input rows it reads into a zero-padded scratch (TF 'same' padding
included), so the inner loops have no bounds checks: one kernel row's taps are one contiguous
run of kw * C floats. Callers (tlkit.engine.kernels.conv) validate shapes and choose the route.
"""
import numpy as np
from numba import njit

from tlkit.engine.kernels.pool import _window, copy_into, max_into, pool_columns

# Largest window (kh * kw * C) and filter count for which the direct kernel beats im2col + BLAS,
# alone (MAX_K with stride 1, MAX_K_STRIDED otherwise) and fused with a max pooling (MAX_K_POOLED:
# it also saves writing the conv output and reading it back). The accumulators live in L1, not in
# registers (numba cannot keep a vector of F sums in registers across taps), so the kernel runs at
# about half of what BLAS does on the same product. MAX_K and MAX_K_POOLED came from
# scripts/bench_direct_conv.py --sweep; MAX_K_STRIDED from the im2col route as it runs now, its
# tiles as chunks shared by the threads (conv_chunks.py), interleaved A/B in one process
# (BENCHMARKS.md, "3-channel stems"): it won on the 3x3/2 RGB stems (K = 27, 32-64 filters,
# batch 1-32), while over one channel (K = 9) the two tie. With stride 1 (VGG16's block1_conv1)
# whole-network runs did not show the gain the layer alone did, so that crossover stays.
MAX_K = 27
MAX_K_STRIDED = 9
MAX_K_POOLED = 36
MAX_FILTERS = 256


def applicable(kernel_shape, dilation, pooled=False, strides=(1, 1)):
    """True when the direct kernel is valid (dilation 1) and faster than im2col + BLAS (then a
    separate max pooling when ``pooled``)."""
    kh, kw, ch, f = kernel_shape
    most = MAX_K_POOLED if pooled else MAX_K if tuple(strides) == (1, 1) else MAX_K_STRIDED
    # A 1x1 window needs no patches: BLAS takes the input as it is (2-5x faster than this kernel).
    return tuple(dilation) == (1, 1) and kh * kw > 1 and kh * kw * ch <= most and f <= MAX_FILTERS


@njit(cache=True, nogil=True)
def _load_rows(x, n, r, sh, pad_top, pad_left, rows):
    """rows[i] = input row r * sh + i - pad_top of image n as a flat run, pad_left zero pixels in
    front and zeros after it up to rows' width; all zeros when that row is padding."""
    _, h, w, ch = x.shape
    width = rows.shape[1]
    front = pad_left * ch
    n_copy = min(w * ch, width - front)
    for i in range(rows.shape[0]):
        ih = r * sh + i - pad_top
        dst = rows[i]
        if ih < 0 or ih >= h:
            dst[:] = 0.0
            continue
        src = x[n, ih].reshape(w * ch)
        for k in range(front):
            dst[k] = 0.0
        for k in range(n_copy):
            dst[front + k] = src[k]
        for k in range(front + n_copy, width):
            dst[k] = 0.0


@njit(cache=True, nogil=True, fastmath={"contract"})
def _conv_row(rows, wk, bias, relu, kw, sw, ch, acc, out, r, lo):
    """out[r, c, lo:lo + F] = (ReLU of) bias + window(c) . wk for every output column c, windows
    read from the padded rows of _load_rows. acc: (4, F) scratch.

    Four pixels share each pass over the weights: every weight loaded serves four FMAs and the
    four accumulator chains overlap. Plain 2-D indexing only: views made inside these loops
    would cost reference counting on every tap.
    """
    run = kw * ch  # one kernel row's taps: contiguous in rows[i] and in wk
    step = sw * ch
    f = wk.shape[1]
    ow = out.shape[1]
    c = 0
    while c < ow:
        block = min(4, ow - c)
        x0 = c * step
        if block == 4:
            for q in range(f):
                acc[0, q] = bias[q]
                acc[1, q] = bias[q]
                acc[2, q] = bias[q]
                acc[3, q] = bias[q]
            for i in range(rows.shape[0]):
                for t in range(run):
                    v0 = rows[i, x0 + t]
                    v1 = rows[i, x0 + step + t]
                    v2 = rows[i, x0 + 2 * step + t]
                    v3 = rows[i, x0 + 3 * step + t]
                    k = i * run + t
                    for q in range(f):  # contiguous over filters: vector FMAs
                        wv = wk[k, q]
                        acc[0, q] += v0 * wv
                        acc[1, q] += v1 * wv
                        acc[2, q] += v2 * wv
                        acc[3, q] += v3 * wv
        else:  # the row's last few pixels
            for p in range(block):
                for q in range(f):
                    acc[p, q] = bias[q]
                for i in range(rows.shape[0]):
                    for t in range(run):
                        v = rows[i, x0 + p * step + t]
                        k = i * run + t
                        for q in range(f):
                            acc[p, q] += v * wk[k, q]
        for p in range(block):
            for q in range(f):
                v = acc[p, q]
                if relu and v < 0.0:
                    v = 0.0
                out[r, c + p, lo + q] = v
        c += block


@njit(cache=True, nogil=True)
def conv_bias_relu(x, wk, bias, relu, kh, kw, sh, sw, pad_top, pad_left, job0, job1, y, lo):
    """y[n, r, c, lo:lo + F] = (ReLU of) conv(x, wk)[n, r, c] + bias; one output row per job, for
    the jobs job0 <= n * OH + r < job1.

    x: (N, H, W, C) C-contiguous; wk: (kh * kw * C, F) C-contiguous; bias: (F,) (zeros for none);
    y: (N, OH, OW, >= lo + F) C-contiguous.
    """
    ch = x.shape[3]
    _, oh, ow, _ = y.shape
    span = ((ow - 1) * sw + kw) * ch
    rows = np.empty((kh, span), np.float32)
    acc = np.empty((4, wk.shape[1]), np.float32)
    for job in range(job0, job1):
        n = job // oh
        r = job % oh
        _load_rows(x, n, r, sh, pad_top, pad_left, rows)
        _conv_row(rows, wk, bias, relu, kw, sw, ch, acc, y[n], r, lo)


@njit(cache=True, nogil=True)
def conv_bias_relu_maxpool(x, wk, bias, relu, kh, kw, sh, sw, pad_top, pad_left, conv_hw,
                           ph, pw, psh, psw, ptop, pleft, parts, job0, job1, y):
    """y = max_pool(conv_bias_relu(x, ...)) without the conv output ever existing in full.

    conv_hw: (OH, OW) of the convolution; (ph, pw), (psh, psw), (ptop, pleft): the pooling window,
    strides and leading padding (TF: padded cells never win). Each image's pooled rows are split
    into ``parts`` jobs; a job keeps a ring of ph conv rows (slot r % ph), so conv rows shared by
    consecutive pooled rows are computed once. Runs the jobs job0 <= job < job1 of the N * parts
    (the callers split them over the threads). y: (N, PH, PW, F) C-contiguous.
    """
    ch = x.shape[3]
    oh, ow = conv_hw
    _, p_rows, p_cols, f = y.shape
    span = ((ow - 1) * sw + kw) * ch
    per = -(-p_rows // parts)
    rows = np.empty((kh, span), np.float32)
    acc = np.empty((4, f), np.float32)
    ring = np.empty((ph, ow, f), np.float32)
    held = np.empty(ph, np.int64)  # conv row each ring slot holds
    rows_max = np.empty(ow * f, np.float32)
    no_offset = np.int64(0)  # typed int64 like conv_bias_relu's lo: one _conv_row specialisation, not two
    for job in range(job0, job1):
        n = job // parts
        p0 = (job % parts) * per
        p1 = min(p0 + per, p_rows)
        held[:] = -1  # a new job: the ring's rows belong to another image or rows
        for pr in range(p0, p1):
            r0, r1 = _window(pr, psh, ptop, ph, oh)
            for r in range(r0, r1):  # at most ph consecutive rows: distinct slots
                slot = r % ph
                if held[slot] != r:
                    _load_rows(x, n, r, sh, pad_top, pad_left, rows)
                    _conv_row(rows, wk, bias, relu, kw, sw, ch, acc, ring, slot, no_offset)
                    held[slot] = r
            # Max over the window's rows, then over each window's columns (as the max pool does).
            run = ow * f
            copy_into(rows_max, ring[r0 % ph].reshape(run))
            for r in range(r0 + 1, r1):
                max_into(rows_max, ring[r % ph].reshape(run))
            pool_columns(rows_max, f, pw, psw, pleft, y[n, pr])
