"""Numba kernels of the policies' colour ops (policy_ops.apply_color), one (H, W, C) float32 image
in place, values 0-255; each op ends on whole values, as torchvision's uint8 path.

The ops follow torchvision's tensor functions: a blend ``floor(clip(r * x + (1 - r) * other))``
with ``other`` black (brightness), the pixel's grayscale (colour), the mean grayscale (contrast)
or the 3x3 smoothed picture (sharpness; the 1-pixel border kept); posterize, solarize,
autocontrast and equalize per channel.
"""
import math

import numpy as np
from numba import njit

R, G, B = 0.2989, 0.587, 0.114  # torchvision's rgb_to_grayscale weights


@njit(cache=True, nogil=True, inline="always")
def _whole(v):
    return math.floor(min(max(v, 0.0), 255.0))


@njit(cache=True, nogil=True)
def make_whole(x):
    """Whole values 0-255; a value a rounding error below a whole one (51/255 * 255) counts as it."""
    h, w, c = x.shape
    for i in range(h):
        for j in range(w):
            for k in range(c):
                x[i, j, k] = _whole(x[i, j, k] + 1e-3)


@njit(cache=True, nogil=True, inline="always")
def _gray(x, i, j):
    if x.shape[2] < 3:
        return x[i, j, 0]
    return math.floor(R * x[i, j, 0] + G * x[i, j, 1] + B * x[i, j, 2])


@njit(cache=True, nogil=True)
def blend(x, ratio, kind):
    """kind 0: with black (brightness), 1: with each pixel's gray (colour), 2: with the mean gray (contrast)."""
    h, w, c = x.shape
    mean = 0.0
    if kind == 2:
        for i in range(h):
            for j in range(w):
                mean += _gray(x, i, j)
        mean /= h * w
    for i in range(h):
        for j in range(w):
            other = 0.0 if kind == 0 else (_gray(x, i, j) if kind == 1 else mean)
            for k in range(c):
                x[i, j, k] = _whole(ratio * x[i, j, k] + (1.0 - ratio) * other)


@njit(cache=True, nogil=True)
def sharpen(x, ratio):
    h, w, c = x.shape
    if h <= 2 or w <= 2:
        return
    src = x.copy()
    for i in range(1, h - 1):
        for j in range(1, w - 1):
            for k in range(c):
                acc = 4.0 * src[i, j, k]
                for di in range(-1, 2):
                    for dj in range(-1, 2):
                        acc += src[i + di, j + dj, k]
                smooth = np.round(acc / 13.0)
                x[i, j, k] = _whole(ratio * src[i, j, k] + (1.0 - ratio) * smooth)


@njit(cache=True, nogil=True)
def posterize(x, bits):
    step = 2.0 ** (8 - bits)
    h, w, c = x.shape
    for i in range(h):
        for j in range(w):
            for k in range(c):
                x[i, j, k] = math.floor(x[i, j, k] / step) * step


@njit(cache=True, nogil=True)
def solarize(x, threshold):
    h, w, c = x.shape
    for i in range(h):
        for j in range(w):
            for k in range(c):
                if x[i, j, k] >= threshold:
                    x[i, j, k] = 255.0 - x[i, j, k]


@njit(cache=True, nogil=True)
def autocontrast(x):
    h, w, c = x.shape
    for k in range(c):
        lo, hi = 255.0, 0.0
        for i in range(h):
            for j in range(w):
                lo, hi = min(lo, x[i, j, k]), max(hi, x[i, j, k])
        if hi == lo:
            continue
        scale = 255.0 / (hi - lo)
        for i in range(h):
            for j in range(w):
                x[i, j, k] = _whole((x[i, j, k] - lo) * scale)


@njit(cache=True, nogil=True)
def equalize(x):
    """PIL's histogram equalization per channel (the last non-empty bin left out of the step)."""
    h, w, c = x.shape
    for k in range(c):
        hist = np.zeros(256, np.int64)
        for i in range(h):
            for j in range(w):
                hist[int(x[i, j, k])] += 1
        last, total = 0, 0
        for v in range(256):
            if hist[v]:
                last = hist[v]
                total += hist[v]
        step = (total - last) // 255
        if step == 0:
            continue
        lut = np.zeros(256)
        acc = step // 2
        for v in range(256):
            lut[v] = min(acc // step, 255)
            acc += hist[v]
        for i in range(h):
            for j in range(w):
                x[i, j, k] = lut[int(x[i, j, k])]
