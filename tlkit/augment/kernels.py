"""Numba kernels of the augmentation fast path.

``warp_affine`` / ``warp_affine_serial`` resample a whole batch through one
affine matrix per image in one pass over the output, with the boundary
semantics of ``scipy.ndimage.affine_transform`` (what Keras calls) for
interpolation orders 0 and 1. The parallel variant is for callers on the main
thread; prefetch worker threads use the serial one (``nogil``) so that batches
run side by side without nesting thread pools.

Layouts: ``src`` is (N, H, W, C) of any real dtype and any strides, ``out``
is a C-contiguous (N, Ho, Wo, C) float32/float64 array, ``mats`` is
(N, 2, 3) float64 and maps an output pixel (row r, col c) to the input
position it is pulled from::

    src_row = r * m[0, 0] + c * m[0, 1] + m[0, 2]
    src_col = r * m[1, 0] + c * m[1, 1] + m[1, 2]

Every output value is ``interpolated * scale[n] + offset[n]`` (the fill value
``cval`` too), so a following rescale or brightness factor rides along.

    >>> out = np.empty((1, 4, 4, 3), np.float32)
    >>> eye = np.array([[[1., 0, 0], [0, 1, 0]]])
    >>> warp_affine(img[None], eye, out, 1, FILL_MODES["nearest"], 0.0,
    ...             np.ones(1, np.float32), np.zeros(1, np.float32))
"""
import math

import numpy as np
from numba import njit, prange

FILL_MODES = {"constant": 0, "nearest": 1, "reflect": 2, "wrap": 3}
_CONSTANT, _NEAREST, _REFLECT = 0, 1, 2
# Pixels this close to the border take the exact (scipy-identical) path.
_MARGIN = 1e-6
_OUTSIDE = -2.0
# Larger matrix entries (only from corrupt parameters) could overflow integer pixel coordinates.
_MAX_MATRIX_ENTRY = 1e9


@njit(cache=True, nogil=True, inline="always")
def _map_coordinate(v, n, mode):
    """Fold a coordinate outside [0, n-1] back in, as scipy.ndimage does.

    Returns _OUTSIDE for 'constant' mode outside the image (caller uses
    cval). 'reflect' is scipy's half-sample symmetric mode (d c b a | a b c d)
    and 'wrap' has period n - 1, both exactly as scipy's map_coordinate.
    """
    if v >= 0.0 and v <= n - 1:
        return v
    if mode == _CONSTANT:
        return _OUTSIDE
    if mode == _NEAREST or n <= 1:
        return 0.0 if v < 0.0 else float(n - 1)
    if mode == _REFLECT:
        period = 2.0 * n
        if v < 0.0:
            if v < -period:
                v = period * float(int(-v / period)) + v
            return v + period if v < -n else -v - 1.0
        if v >= period:
            v -= period * float(int(v / period))
        return period - v - 1.0 if v >= n else v
    period = n - 1.0  # wrap
    if v < 0.0:
        return v + period * float(int(-v / period) + 1)
    return v - period * float(int(v / period))


@njit(cache=True, nogil=True, inline="always")
def _clamp(i, n):
    return np.uint64(0 if i < 0 else (n - 1 if i >= n else i))


@njit(cache=True, nogil=True, inline="always")
def _border_pixel(img, h, w, nch, y, x, orow, o, order, mode, fill):
    """One output pixel near or outside the border, by scipy's exact rules."""
    y = _map_coordinate(y, h, mode)
    x = _map_coordinate(x, w, mode)
    if y == _OUTSIDE or x == _OUTSIDE:
        for ch in range(nch):
            orow[o + np.uint64(ch)] = fill
        return
    rowlen = np.uint64(w * nch)
    step = np.uint64(nch)
    if order == 0:
        p = (_clamp(int(math.floor(y + 0.5)), h) * rowlen
             + _clamp(int(math.floor(x + 0.5)), w) * step)
        for ch in range(nch):
            orow[o + np.uint64(ch)] = img[p + np.uint64(ch)]
        return
    yf = math.floor(y)
    xf = math.floor(x)
    fy = np.float32(y - yf)
    fx = np.float32(x - xf)
    ya = _clamp(int(yf), h) * rowlen
    yb = _clamp(int(yf) + 1, h) * rowlen
    xa = _clamp(int(xf), w) * step
    xb = _clamp(int(xf) + 1, w) * step
    for ch in range(nch):
        k = np.uint64(ch)
        top = img[ya + xa + k] + fx * (img[ya + xb + k] - img[ya + xa + k])
        bottom = img[yb + xa + k] + fx * (img[yb + xb + k] - img[yb + xa + k])
        orow[o + k] = top + fy * (bottom - top)


@njit(cache=True, nogil=True, inline="always")
def _inside_span(start, step, lo, hi, n):
    """Columns c in [0, n) with lo <= start + c * step <= hi, as (first, stop)."""
    if hi < lo:  # an image 1 pixel high or wide has no safe interior
        return 0, 0
    if step == 0.0:
        return (0, n) if lo <= start <= hi else (0, 0)
    a = (lo - start) / step
    b = (hi - start) / step
    if a > b:
        a, b = b, a
    first = max(0.0, math.ceil(a))
    stop = min(float(n), math.floor(b) + 1.0)
    if stop <= first:
        return 0, 0
    return int(first), int(stop)


@njit(cache=True, nogil=True)
def _warp_row(img, h, w, nch, m, orow, r, order, mode, fill):
    """Fill one output row (flat Wo*C) from the flat float32 image ``img``.

    The columns whose source lies safely inside the image form one interval
    (a line crosses a rectangle once); they take a branch-free loop. The
    others go through the exact border rules.
    """
    wo = orow.shape[0] // nch
    y_row = r * m[0, 0] + m[0, 2]
    x_row = r * m[1, 0] + m[1, 2]
    dy = m[0, 1]
    dx = m[1, 1]
    # a margin keeps pixels that touch the border on the exact path
    y_first, y_stop = _inside_span(y_row, dy, _MARGIN, h - 1.0 - _MARGIN, wo)
    x_first, x_stop = _inside_span(x_row, dx, _MARGIN, w - 1.0 - _MARGIN, wo)
    first = max(y_first, x_first)
    stop = max(first, min(y_stop, x_stop))
    rowlen = np.uint64(w * nch)
    step = np.uint64(nch)
    u1, u2 = np.uint64(1), np.uint64(2)
    if order == 0:
        for c in range(first, stop):
            # scipy's exact position: rounding ties must fall the same way
            y = r * m[0, 0] + c * dy + m[0, 2]
            x = r * m[1, 0] + c * dx + m[1, 2]
            p = np.uint64(int(y + 0.5)) * rowlen + np.uint64(int(x + 0.5)) * step
            o = np.uint64(c) * step
            for ch in range(nch):
                orow[o + np.uint64(ch)] = img[p + np.uint64(ch)]
    else:
        for c in range(first, stop):
            y = y_row + c * dy
            x = x_row + c * dx
            y0 = int(y)
            x0 = int(x)
            fy = np.float32(y - y0)
            fx = np.float32(x - x0)
            p = np.uint64(y0) * rowlen + np.uint64(x0) * step
            q = p + rowlen
            o = np.uint64(c) * step
            if nch == 3:
                t0 = img[p] + fx * (img[p + step] - img[p])
                t1 = img[p + u1] + fx * (img[p + step + u1] - img[p + u1])
                t2 = img[p + u2] + fx * (img[p + step + u2] - img[p + u2])
                s0 = img[q] + fx * (img[q + step] - img[q])
                s1 = img[q + u1] + fx * (img[q + step + u1] - img[q + u1])
                s2 = img[q + u2] + fx * (img[q + step + u2] - img[q + u2])
                orow[o] = t0 + fy * (s0 - t0)
                orow[o + u1] = t1 + fy * (s1 - t1)
                orow[o + u2] = t2 + fy * (s2 - t2)
            else:
                for ch in range(nch):
                    k = np.uint64(ch)
                    t = img[p + k] + fx * (img[p + step + k] - img[p + k])
                    s = img[q + k] + fx * (img[q + step + k] - img[q + k])
                    orow[o + k] = t + fy * (s - t)
    c = 0
    while c < wo:
        if c == first and stop > first:
            c = stop
            continue
        # same operation order as scipy so borders and ties decide alike
        _border_pixel(img, h, w, nch, r * m[0, 0] + c * m[0, 1] + m[0, 2],
                      r * m[1, 0] + c * m[1, 1] + m[1, 2], orow,
                      np.uint64(c) * step, order, mode, fill)
        c += 1


@njit(cache=True, nogil=True)
def _warp_image(src, m, out, order, mode, cval, scale, offset, scratch):
    """Warp one (H, W, C) image into ``out`` (Ho, Wo, C), C-contiguous."""
    h, w, nch = src.shape
    # Float copy first (scaled): the per-pixel loop then gathers floats, which
    # is much faster than converting bytes, and interpolation commutes with
    # the affine value map.
    k = 0
    for i in range(h):
        for j in range(w):
            for ch in range(nch):
                scratch[k] = np.float32(src[i, j, ch]) * scale + offset
                k += 1
    fill = np.float32(cval * scale + offset)
    rows = out.reshape(out.shape[0], out.shape[1] * nch)
    # A NaN, infinite or absurd matrix maps every pixel nowhere: all fill, never a wild index.
    for a in range(2):
        for b in range(3):
            if not (abs(m[a, b]) <= _MAX_MATRIX_ENTRY):
                rows[:, :] = fill
                return
    for r in range(out.shape[0]):
        _warp_row(scratch, h, w, nch, m, rows[r], r, order, mode, fill)


@njit(cache=True, nogil=True)
def warp_affine_serial(src, mats, out, order, mode, cval, scale, offset):
    """Warp every image of ``src`` into ``out`` on the calling thread."""
    scratch = np.empty(src.shape[1] * src.shape[2] * src.shape[3], np.float32)
    for n in range(out.shape[0]):
        _warp_image(src[n], mats[n], out[n], order, mode, cval,
                    np.float32(scale[n]), np.float32(offset[n]), scratch)


@njit(cache=True, nogil=True, parallel=True)
def warp_affine(src, mats, out, order, mode, cval, scale, offset, chunks):
    """Warp every image of ``src`` into ``out``, ``chunks`` images at a time.

    Pass ``chunks`` = the number of numba threads (or fewer).
    """
    n = out.shape[0]
    for k in prange(chunks):
        scratch = np.empty(src.shape[1] * src.shape[2] * src.shape[3], np.float32)
        for i in range(k, n, chunks):
            _warp_image(src[i], mats[i], out[i], order, mode, cval,
                        np.float32(scale[i]), np.float32(offset[i]), scratch)


@njit(cache=True, nogil=True)
def adjust_intensity(x, channel_shift, brightness, keep_alpha):
    """Keras's channel shift, then brightness, in place on a float batch.

    ``x`` is (N, H, W, C); NaN in ``channel_shift[n]`` / ``brightness[n]``
    means "not for this image". Channel shift adds one intensity to every
    channel and clips to the image's own [min, max]. Brightness reproduces
    Keras's trip through an 8-bit PIL image: values are truncated to uint8
    (after stretching min..max to 0..255 when they leave that range), scaled
    by the factor the way PIL's ImageEnhance.Brightness blends, and mapped
    back. ``keep_alpha`` leaves the last channel alone, as PIL does for RGBA.
    """
    h, w, nch = x.shape[1], x.shape[2], x.shape[3]
    for n in range(x.shape[0]):
        img = x[n]
        if not math.isnan(channel_shift[n]):
            lo = img.min()
            hi = img.max()
            shift = channel_shift[n]
            for i in range(h):
                for j in range(w):
                    for ch in range(nch):
                        img[i, j, ch] = min(max(img[i, j, ch] + shift, lo), hi)
        if not math.isnan(brightness[n]):
            factor = brightness[n]
            lo = np.float32(img.min())
            hi = np.float32(img.max())
            stretch = lo < 0 or hi > 255
            span = hi - lo
            for i in range(h):
                for j in range(w):
                    for ch in range(nch):
                        v = np.float32(img[i, j, ch])
                        if stretch:
                            v = v - lo
                            if span != 0:
                                v = v / span
                            v = v * np.float32(255.0)
                        q = float(int(v))  # astype(uint8) truncates
                        if not (keep_alpha and ch == nch - 1):
                            if factor >= 0.0 and factor <= 1.0:
                                q = float(int(q * factor))
                            else:  # PIL clips extrapolation in float32
                                t = float(np.float32(q * factor))
                                q = 0.0 if t <= 0.0 else (255.0 if t >= 255.0 else float(int(t)))
                        if stretch:
                            q = q / 255.0 * span + lo
                        img[i, j, ch] = q
