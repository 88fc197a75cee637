"""Numba kernels of the colour steps that follow the warp in a preprocessing-layer stack.

Every colour layer (contrast, brightness, rescaling, normalization) is, per image n and
channel c, a clipped affine map ``clip(a * x + b, lo, hi)``; a run of them folds into one such
map (``ClipAffine.then``), so the whole run costs one pass over the batch, plus one reduction
pass for each contrast (which needs the mean of its own input). Arrays: ``x`` (N, H, W, C)
float32, C-contiguous; ``a``, ``b``, ``lo``, ``hi`` (N, C) float64.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True, parallel=True)
def channel_means(x, a, b, lo, hi):
    """(N, C) means over (H, W) of ``clip(a * x + b, lo, hi)``."""
    n, h, w, nch = x.shape
    out = np.zeros((n, nch))
    for i in prange(n):
        img = x[i].reshape(h * w, nch)
        acc = np.zeros(nch)
        for p in range(h * w):
            for ch in range(nch):
                acc[ch] += min(max(a[i, ch] * img[p, ch] + b[i, ch], lo[i, ch]), hi[i, ch])
        for ch in range(nch):
            out[i, ch] = acc[ch] / (h * w)
    return out


@njit(cache=True, nogil=True, parallel=True)
def clip_affine(x, a, b, lo, hi):
    """``x = clip(a * x + b, lo, hi)`` in place, per image and channel."""
    n, h, w, nch = x.shape
    for i in prange(n):
        img = x[i].reshape(h * w, nch)
        af = a[i].astype(np.float32)
        bf = b[i].astype(np.float32)
        lf = lo[i].astype(np.float32)
        hf = hi[i].astype(np.float32)
        for p in range(h * w):
            for ch in range(nch):
                img[p, ch] = min(max(af[ch] * img[p, ch] + bf[ch], lf[ch]), hf[ch])
