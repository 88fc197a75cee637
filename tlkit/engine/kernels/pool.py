"""2-D max and average pooling (NHWC): forward and backward.

    y, argmax = max_pool2d_forward(x, (2, 2), (2, 2), "valid")
    dx = max_pool2d_backward(dy, argmax, x.shape)
    y = avg_pool2d_forward(x, (3, 3), (1, 1), "same")
    dx = avg_pool2d_backward(dy, x.shape, (3, 3), (1, 1), "same")

Padding follows TF: max pooling never picks a padded cell, average pooling divides by the
number of real (unpadded) cells in each window. ``argmax`` holds, per output value, the flat
index into its image's (H, W, C) block of the winning input, so the backward scatters without
looking at x again. One output row of one image is one parallel job.

Inference (``max_pool2d_forward(..., with_argmax=False)``) keeps no index array and pools
separably: the max over the window's input rows first (flat runs of W*C contiguous floats, which
vectorize fully), then over each window's columns in that one-row buffer.
"""
import functools

import numpy as np
from numba import njit, prange

from tlkit.engine.kernels import conv_chunks, jobs
from tlkit.engine.kernels.geometry import conv_output_shape, pads
from tlkit.utils import worker_pool

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward"]


@njit(cache=True, nogil=True, inline="always")
def _window(out_index, stride, pad_before, size, length):
    """[lo, hi) of the input cells in one pooling window, clipped to the real (unpadded) input."""
    start = out_index * stride - pad_before
    return max(start, 0), min(start + size, length)


@njit(cache=True, nogil=True, parallel=True)
def max_pool_kernel(x, ph, pw, sh, sw, top, left, y, argmax):
    """Training max pooling: y and the flat index of each window's winner."""
    # Channels innermost: every comparison runs over a contiguous run of C values.
    n_img, h, w, ch = x.shape
    _, oh, ow, _ = y.shape
    for job in prange(n_img * oh):
        n = job // oh
        r = job % oh
        h0, h1 = _window(r, sh, top, ph, h)
        for c in range(ow):
            w0, w1 = _window(c, sw, left, pw, w)
            out = y[n, r, c]
            out[:] = x[n, h0, w0]
            arg = argmax[n, r, c]
            first = (h0 * w + w0) * ch
            for k in range(ch):
                arg[k] = first + k
            for i in range(h0, h1):
                for j in range(w0, w1):
                    if i == h0 and j == w0:
                        continue
                    row = x[n, i, j]
                    base = (i * w + j) * ch
                    for k in range(ch):
                        if row[k] > out[k]:
                            out[k] = row[k]
                            arg[k] = base + k


@njit(cache=True, nogil=True, inline="always")
def max_into(acc, src):
    """acc = max(acc, src), element-wise over two 1-D runs of the same length."""
    # Indexing 1-D runs with range() counters only: numba then skips negative-index wraparound
    # checks, and the unconditional store (a select) vectorizes where a branch would not.
    for k in range(acc.shape[0]):
        a = acc[k]
        v = src[k]
        acc[k] = v if v > a else a


@njit(cache=True, nogil=True, inline="always")
def copy_into(dst, src):
    """dst = src over two 1-D runs of the same length. A loop, not ``dst[:] = src``: outside a
    parallel kernel numba compiles that assignment with a shape-mismatch error message whose
    string formatting costs seconds of compile time on a cold cache."""
    for k in range(dst.shape[0]):
        dst[k] = src[k]


@njit(cache=True, nogil=True, inline="always")
def pool_columns(rows_max, ch, pw, sw, left, out):
    """out[c] = the max over pooling window c of ``rows_max``, a 1-D run of W pixels x ch values
    that already holds the max over the window's rows; out: (OW, ch)."""
    w = rows_max.shape[0] // ch
    for c in range(out.shape[0]):
        w0, w1 = _window(c, sw, left, pw, w)
        dst = out[c]
        copy_into(dst, rows_max[w0 * ch:(w0 + 1) * ch])
        for j in range(w0 + 1, w1):
            max_into(dst, rows_max[j * ch:(j + 1) * ch])


@njit(cache=True, nogil=True)
def max_pool_rows_kernel(x, ph, pw, sh, sw, top, left, job0, job1, y):
    """Inference max pooling, no argmax: rows first, then columns (see the module docstring); output
    rows job0 <= job < job1, numbered image-major (the callers split them over the threads)."""
    _, h, w, ch = x.shape
    _, oh, _, _ = y.shape
    run = w * ch
    for job in range(job0, job1):
        n = job // oh
        r = job % oh
        h0, h1 = _window(r, sh, top, ph, h)
        rows_max = x[n, h0].copy().reshape(run)
        for i in range(h0 + 1, h1):
            max_into(rows_max, x[n, i].reshape(run))
        pool_columns(rows_max, ch, pw, sw, left, y[n, r])


@njit(cache=True, nogil=True, parallel=True)
def max_pool_backward_kernel(dy, argmax, dx):
    # Overlapping windows can route several outputs to one input, so each job owns a whole image.
    n_img, oh, ow, ch = dy.shape
    for n in prange(n_img):
        flat = dx[n].reshape(-1)
        for r in range(oh):
            for c in range(ow):
                for k in range(ch):
                    flat[argmax[n, r, c, k]] += dy[n, r, c, k]


@njit(cache=True, nogil=True, parallel=True)
def avg_pool_kernel(x, ph, pw, sh, sw, top, left, y):
    n_img, h, w, ch = x.shape
    _, oh, ow, _ = y.shape
    for job in prange(n_img * oh):
        n = job // oh
        r = job % oh
        h0, h1 = _window(r, sh, top, ph, h)
        for c in range(ow):
            w0, w1 = _window(c, sw, left, pw, w)
            inv = np.float32(1.0 / ((h1 - h0) * (w1 - w0)))
            for k in range(ch):
                y[n, r, c, k] = 0.0
            for i in range(h0, h1):
                for j in range(w0, w1):
                    for k in range(ch):
                        y[n, r, c, k] += x[n, i, j, k]
            for k in range(ch):
                y[n, r, c, k] *= inv


@njit(cache=True, nogil=True, parallel=True)
def avg_pool_backward_kernel(dy, ph, pw, sh, sw, top, left, dx):
    n_img, h, w, ch = dx.shape
    _, oh, ow, _ = dy.shape
    for n in prange(n_img):
        for r in range(oh):
            h0, h1 = _window(r, sh, top, ph, h)
            for c in range(ow):
                w0, w1 = _window(c, sw, left, pw, w)
                inv = np.float32(1.0 / ((h1 - h0) * (w1 - w0)))
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        for k in range(ch):
                            dx[n, i, j, k] += dy[n, r, c, k] * inv


def _setup(x, pool_size, strides, padding, fn):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"{fn}: expected NHWC input (batch, height, width, channels), got shape {x.shape}.")
    try:
        window, (oh, ow) = _cached_window(x.shape[1:3], tuple(pool_size), tuple(strides), padding)
    except TypeError:  # padding can't be a cache key
        window, (oh, ow) = _window_geometry(x.shape[1:3], pool_size, strides, padding)
    return x, window, (x.shape[0], oh, ow, x.shape[3])


def _window_geometry(hw, pool_size, strides, padding):
    """The kernels' (ph, pw, sh, sw, top, left) and the output (oh, ow) of a pooling over an (h, w) input."""
    (ph, pw), (sh, sw) = pool_size, strides
    top, left = pads(hw[0], ph, sh, padding)[0], pads(hw[1], pw, sw, padding)[0]
    return (int(ph), int(pw), int(sh), int(sw), top, left), conv_output_shape(hw, (ph, pw), (sh, sw), padding)


# A training step pools the same few shapes every time: their geometry is computed once.
_cached_window = functools.lru_cache(maxsize=256)(_window_geometry)


def check_out(out, shape, fn):
    """An ``out=`` for a pooled result: None, or a C-contiguous float32 array of exactly ``shape``."""
    if out is not None and (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != shape
                            or not out.flags.c_contiguous):
        raise ValueError(f"{fn}: out must be a C-contiguous float32 array of shape {shape}, "
                         f"got {getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}.")


def max_pool2d_forward(x, pool_size, strides, padding, with_argmax=True, out=None):
    """(y, argmax); argmax is None when ``with_argmax`` is False (inference). ``out``: optional
    C-contiguous float32 array of y's shape to write y into (inference only)."""
    x, window, out_shape = _setup(x, pool_size, strides, padding, "max_pool2d_forward")
    if not with_argmax:
        check_out(out, out_shape, "max_pool2d_forward")
        y = np.empty(out_shape, np.float32) if out is None else out
        native = jobs.pool_poster(max_pool_rows_kernel, x, y, window) if worker_pool.serves_jobs() else None
        conv_chunks.by_jobs(out_shape[0] * out_shape[1], lambda j0, j1: max_pool_rows_kernel(x, *window, j0, j1, y),
                            native)
        return y, None
    if out is not None:
        raise ValueError("max_pool2d_forward: out is for inference (with_argmax=False) only.")
    y = np.empty(out_shape, np.float32)
    argmax = np.empty(out_shape, np.int32)
    max_pool_kernel(x, *window, y, argmax)
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape):
    dx = np.zeros(x_shape, np.float32)
    max_pool_backward_kernel(np.ascontiguousarray(dy, dtype=np.float32), argmax, dx)
    return dx


def avg_pool2d_forward(x, pool_size, strides, padding):
    x, window, out_shape = _setup(x, pool_size, strides, padding, "avg_pool2d_forward")
    y = np.empty(out_shape, np.float32)
    avg_pool_kernel(x, *window, y)
    return y


def avg_pool2d_backward(dy, x_shape, pool_size, strides, padding):
    _, window, out_shape = _setup(np.empty((1, *x_shape[1:]), np.float32), pool_size, strides, padding,
                                  "avg_pool2d_backward")
    dx = np.zeros(x_shape, np.float32)
    avg_pool_backward_kernel(np.ascontiguousarray(dy, dtype=np.float32), *window, dx)
    return dx
