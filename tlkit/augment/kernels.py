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
from numba import njit, prange, types
from numba.extending import overload

FILL_MODES = {"constant": 0, "nearest": 1, "reflect": 2, "wrap": 3}
_CONSTANT, _NEAREST, _REFLECT = 0, 1, 2
# Pixels this close to the border take the exact (scipy-identical) path.
_MARGIN = 1e-6
_OUTSIDE = -2.0
# Larger matrix entries (only from corrupt parameters) could overflow integer pixel coordinates.
_MAX_MATRIX_ENTRY = 1e9
# Interior positions in 32.32 fixed point (see _bilinear_span).
_ONE = float(2 ** 32)
_INV_ONE = np.float32(2.0 ** -32)
_FRACTION = np.int64(2 ** 32 - 1)
_ANCHOR = 4096
_MAX_FIXED_SIZE = 2 ** 30


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


def _texel_impl(src, lut, y, x, k, scale, offset):
    """Typed by the overload below."""


@overload(_texel_impl)
def _texel_overload(src, lut, y, x, k, scale, offset):
    if src.dtype == types.uint8:
        return lambda src, lut, y, x, k, scale, offset: lut[src[y, x, k]]
    return lambda src, lut, y, x, k, scale, offset: np.float32(src[y, x, k]) * scale + offset


@njit(cache=True, nogil=True, inline="always")
def _texel(src, lut, y, x, k, scale, offset):
    """``src[y, x, k] * scale + offset`` as float32: a table look-up for bytes (no conversions), arithmetic otherwise."""
    return _texel_impl(src, lut, y, x, k, scale, offset)


@njit(cache=True, nogil=True, inline="always")
def _lerp2(src, lut, y0, y1, x0, x1, k, fy, fx, scale, offset):
    """Bilinear value of channel ``k`` from the 2x2 pixels (y0|y1, x0|x1)."""
    a = _texel(src, lut, y0, x0, k, scale, offset)
    top = a + fx * (_texel(src, lut, y0, x1, k, scale, offset) - a)
    b = _texel(src, lut, y1, x0, k, scale, offset)
    bottom = b + fx * (_texel(src, lut, y1, x1, k, scale, offset) - b)
    return top + fy * (bottom - top)


@njit(cache=True, nogil=True, inline="always")
def _clamp(i, n):
    return np.uint64(0 if i < 0 else (n - 1 if i >= n else i))


@njit(cache=True, nogil=True)
def _border_pixel(src, lut, orow, c, y, x, order, mode, fill, scale, offset):
    """Output pixel ``c`` of ``orow`` from source position (y, x) near or outside the border, by scipy's exact rules."""
    h, w, nch = src.shape
    uc = np.uint64(c)
    y = _map_coordinate(y, h, mode)
    x = _map_coordinate(x, w, mode)
    if y == _OUTSIDE or x == _OUTSIDE:
        for ch in range(nch):
            orow[uc, ch] = fill
        return
    if order == 0:
        yi = _clamp(int(math.floor(y + 0.5)), h)
        xi = _clamp(int(math.floor(x + 0.5)), w)
        for ch in range(nch):
            orow[uc, ch] = _texel(src, lut, yi, xi, np.uint64(ch), scale, offset)
        return
    yf = math.floor(y)
    xf = math.floor(x)
    fy = np.float32(y - yf)
    fx = np.float32(x - xf)
    y0 = _clamp(int(yf), h)
    y1 = _clamp(int(yf) + 1, h)
    x0 = _clamp(int(xf), w)
    x1 = _clamp(int(xf) + 1, w)
    for ch in range(nch):
        orow[uc, ch] = _lerp2(src, lut, y0, y1, x0, x1, np.uint64(ch), fy, fx, scale, offset)


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
def _bilinear_span(src, lut, orow, first, stop, y_row, x_row, dy, dx, scale, offset):
    """Columns [first, stop) of one output row, all with their 2x2 source pixels inside the image.

    Positions run in 32.32 fixed point: the integer part indexes and the
    fraction becomes a float32 weight, three cheap integer operations
    instead of float-int-float round trips. Re-anchoring every _ANCHOR
    columns keeps the accumulated rounding (< 2**-33 per column) far below
    the 1e-6 border margin.
    """
    nch = src.shape[2]
    u1 = np.uint64(1)
    sy = np.int64(round(dy * _ONE))
    sx = np.int64(round(dx * _ONE))
    for start in range(first, stop, _ANCHOR):
        yy = np.int64(round((y_row + start * dy) * _ONE))
        xx = np.int64(round((x_row + start * dx) * _ONE))
        for c in range(start, min(stop, start + _ANCHOR)):
            y0 = np.uint64(yy >> 32)  # unsigned indices: no negative-index wraparound code
            x0 = np.uint64(xx >> 32)
            fy = np.float32(yy & _FRACTION) * _INV_ONE
            fx = np.float32(xx & _FRACTION) * _INV_ONE
            yy += sy
            xx += sx
            uc = np.uint64(c)
            if nch == 3:  # the common case, unrolled
                orow[uc, 0] = _lerp2(src, lut, y0, y0 + u1, x0, x0 + u1, np.uint64(0), fy, fx, scale, offset)
                orow[uc, 1] = _lerp2(src, lut, y0, y0 + u1, x0, x0 + u1, np.uint64(1), fy, fx, scale, offset)
                orow[uc, 2] = _lerp2(src, lut, y0, y0 + u1, x0, x0 + u1, np.uint64(2), fy, fx, scale, offset)
            else:
                for ch in range(nch):
                    orow[uc, ch] = _lerp2(src, lut, y0, y0 + u1, x0, x0 + u1, np.uint64(ch), fy, fx, scale, offset)


@njit(cache=True, nogil=True)
def _nearest_span(src, lut, orow, first, stop, r, m, scale, offset):
    """Columns [first, stop) of one output row by nearest neighbour, all inside the image."""
    nch = src.shape[2]
    for c in range(first, stop):
        # scipy's exact position: rounding ties must fall the same way
        yi = np.uint64(int(r * m[0, 0] + c * m[0, 1] + m[0, 2] + 0.5))
        xi = np.uint64(int(r * m[1, 0] + c * m[1, 1] + m[1, 2] + 0.5))
        uc = np.uint64(c)
        for ch in range(nch):
            orow[uc, ch] = _texel(src, lut, yi, xi, np.uint64(ch), scale, offset)


@njit(cache=True, nogil=True)
def _warp_image(src, m, out, order, mode, cval, scale, offset, lut):
    """Warp one (H, W, C) image into ``out`` (Ho, Wo, C); ``lut`` is scratch for 256 float32.

    Per output row, the columns whose source lies safely inside the image
    form one interval (a line crosses a rectangle once); they take a lean
    loop that gathers straight from ``src``. The others go through the exact
    border rules.
    """
    h, w = src.shape[0], src.shape[1]
    wo = out.shape[1]
    fill = np.float32(cval * scale + offset)
    # A NaN, infinite or absurd matrix maps every pixel nowhere: all fill, never a wild index.
    for a in range(2):
        for b in range(3):
            if not (abs(m[a, b]) <= _MAX_MATRIX_ENTRY):
                out[:] = fill
                return
    for v in range(256):  # byte -> scaled float32, for uint8 sources
        lut[v] = np.float32(v) * scale + offset
    # Fixed-point positions need h, w < 2**31; larger (absurd) images take the exact path throughout.
    fits = max(h, w) < _MAX_FIXED_SIZE
    dy = m[0, 1]
    dx = m[1, 1]
    for r in range(out.shape[0]):
        orow = out[r]
        y_row = r * m[0, 0] + m[0, 2]
        x_row = r * m[1, 0] + m[1, 2]
        # a margin keeps pixels that touch the border on the exact path
        y_first, y_stop = _inside_span(y_row, dy, _MARGIN, h - 1.0 - _MARGIN, wo)
        x_first, x_stop = _inside_span(x_row, dx, _MARGIN, w - 1.0 - _MARGIN, wo)
        first = max(y_first, x_first)
        stop = max(first, min(y_stop, x_stop)) if fits else first
        if order == 0:
            _nearest_span(src, lut, orow, first, stop, r, m, scale, offset)
        else:
            _bilinear_span(src, lut, orow, first, stop, y_row, x_row, dy, dx, scale, offset)
        for c in range(wo):
            if first <= c < stop:
                continue
            # same operation order as scipy so borders and ties decide alike
            _border_pixel(src, lut, orow, c, r * m[0, 0] + c * m[0, 1] + m[0, 2], r * m[1, 0] + c * m[1, 1] + m[1, 2],
                          order, mode, fill, scale, offset)


@njit(cache=True, nogil=True)
def warp_affine_serial(src, mats, out, order, mode, cval, scale, offset):
    """Warp every image of ``src`` into ``out`` on the calling thread."""
    lut = np.empty(256, np.float32)
    for n in range(out.shape[0]):
        _warp_image(src[n], mats[n], out[n], order, mode, cval, np.float32(scale[n]), np.float32(offset[n]), lut)


@njit(cache=True, nogil=True, parallel=True)
def warp_affine(src, mats, out, order, mode, cval, scale, offset, chunks):
    """Warp every image of ``src`` into ``out``, ``chunks`` images at a time.

    Pass ``chunks`` = the number of numba threads (or fewer).
    """
    n = out.shape[0]
    for k in prange(chunks):
        lut = np.empty(256, np.float32)
        for i in range(k, n, chunks):
            _warp_image(src[i], mats[i], out[i], order, mode, cval, np.float32(scale[i]), np.float32(offset[i]), lut)


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
