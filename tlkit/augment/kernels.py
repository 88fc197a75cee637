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
    >>> warp_affine_serial(img[None], eye, out, 1, FILL_MODES["nearest"], 0.0,
    ...                    np.ones(1, np.float32), np.zeros(1, np.float32))
"""
import math

import numpy as np
from numba import njit, prange

# "grid-wrap" repeats the picture with period n (Keras 3 / TensorFlow's "wrap"); scipy's "wrap" has period n - 1.
FILL_MODES = {"constant": 0, "nearest": 1, "reflect": 2, "wrap": 3, "grid-wrap": 4}
_CONSTANT, _NEAREST, _REFLECT, _GRID_WRAP = 0, 1, 2, 4
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
    if mode == _GRID_WRAP:
        v = v - n * math.floor(v / n)
        return v if v <= n - 1 else float(n - 1)  # between the last pixel and the first: the seam is clamped
    period = n - 1.0  # wrap
    if v < 0.0:
        return v + period * float(int(-v / period) + 1)
    return v - period * float(int(v / period))


@njit(cache=True, nogil=True, inline="always")
def _lerp4(img, p, q, right, fy, fx):
    """Bilinear value from the values p, p + right (top row) and q, q + right (bottom row) of ``img``."""
    a = img[p]
    top = a + fx * (img[p + right] - a)
    b = img[q]
    bottom = b + fx * (img[q + right] - b)
    return top + fy * (bottom - top)


@njit(cache=True, nogil=True, inline="always")
def _lerp_pixel(img, orow, o, p, q, right, fy, fx, nch):
    """All channels of output pixel ``o`` from the 2x2 source pixels at p (top) and q (bottom)."""
    if nch == 3:  # the common case, unrolled
        u1, u2 = np.uint64(1), np.uint64(2)
        orow[o] = _lerp4(img, p, q, right, fy, fx)
        orow[o + u1] = _lerp4(img, p + u1, q + u1, right, fy, fx)
        orow[o + u2] = _lerp4(img, p + u2, q + u2, right, fy, fx)
    else:
        for ch in range(nch):
            k = np.uint64(ch)
            orow[o + k] = _lerp4(img, p + k, q + k, right, fy, fx)


@njit(cache=True, nogil=True, inline="always")
def _clamp(i, n):
    return 0 if i < 0 else (n - 1 if i >= n else i)


@njit(cache=True, nogil=True)
def _border_span(img, orow, c0, c1, r, m, h, w, nch, order, mode, fill):
    """Columns [c0, c1) of one output row, near or outside the border, by scipy's exact rules."""
    rowlen = w * nch
    for c in range(c0, c1):
        # same operation order as scipy so borders and ties decide alike
        y = _map_coordinate(r * m[0, 0] + c * m[0, 1] + m[0, 2], h, mode)
        x = _map_coordinate(r * m[1, 0] + c * m[1, 1] + m[1, 2], w, mode)
        o = np.uint64(c * nch)
        if y == _OUTSIDE or x == _OUTSIDE:
            for ch in range(nch):
                orow[o + np.uint64(ch)] = fill
        elif order == 0:
            p = np.uint64(_clamp(int(math.floor(y + 0.5)), h) * rowlen + _clamp(int(math.floor(x + 0.5)), w) * nch)
            for ch in range(nch):
                orow[o + np.uint64(ch)] = img[p + np.uint64(ch)]
        else:
            yf = math.floor(y)
            xf = math.floor(x)
            fy = np.float32(y - yf)
            fx = np.float32(x - xf)
            x0 = _clamp(int(xf), w) * nch
            p = np.uint64(_clamp(int(yf), h) * rowlen + x0)
            q = np.uint64(_clamp(int(yf) + 1, h) * rowlen + x0)
            right = np.uint64(_clamp(int(xf) + 1, w) * nch - x0)
            _lerp_pixel(img, orow, o, p, q, right, fy, fx, nch)


@njit(cache=True, nogil=True)
def _clamped_span(img, orow, c0, c1, r, m, h, w, nch, constant, fill):
    """Bilinear columns [c0, c1) near or outside the border for 'nearest' or 'constant' fill.

    The same values as ``_border_span`` for those two modes, with less work:
    'nearest' clamps the position into the image, 'constant' fills outside,
    and a clamped position needs no floor (it is >= 0).
    """
    rowlen = w * nch
    for c in range(c0, c1):
        y = r * m[0, 0] + c * m[0, 1] + m[0, 2]  # scipy's operation order
        x = r * m[1, 0] + c * m[1, 1] + m[1, 2]
        o = np.uint64(c * nch)
        if constant and (y < 0.0 or y > h - 1.0 or x < 0.0 or x > w - 1.0):
            for ch in range(nch):
                orow[o + np.uint64(ch)] = fill
            continue
        y = min(max(y, 0.0), h - 1.0)
        x = min(max(x, 0.0), w - 1.0)
        yi = int(y)
        xi = int(x)
        fy = np.float32(y - yi)
        fx = np.float32(x - xi)
        p = np.uint64(yi * rowlen + xi * nch)
        q = np.uint64(min(yi + 1, h - 1) * rowlen + xi * nch)
        right = np.uint64((min(xi + 1, w - 1) - xi) * nch)
        _lerp_pixel(img, orow, o, p, q, right, fy, fx, nch)


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


@njit(cache=True, nogil=True, fastmath={"contract"})
def _bilinear_span(img, orow, first, stop, y_row, x_row, dy, dx, w, nch):
    """Columns [first, stop) of one output row, all with their 2x2 source pixels inside the image.

    Positions run in 32.32 fixed point: the integer part indexes and the
    fraction becomes a float32 weight, a few integer operations instead of
    float-int-float round trips. Re-anchoring every _ANCHOR columns keeps
    the accumulated rounding (< 2**-33 per column) far below the 1e-6
    border margin. ``contract`` lets LLVM fuse the lerps into FMAs (exact
    at whole-pixel positions, where the weights are 0).
    """
    rowlen = np.uint64(w * nch)
    step = np.uint64(nch)
    sy = np.int64(round(dy * _ONE))
    sx = np.int64(round(dx * _ONE))
    for start in range(first, stop, _ANCHOR):
        yy = np.int64(round((y_row + start * dy) * _ONE))
        xx = np.int64(round((x_row + start * dx) * _ONE))
        for c in range(start, min(stop, start + _ANCHOR)):
            # unsigned offsets: no negative-index wraparound code
            p = np.uint64(yy >> 32) * rowlen + np.uint64(xx >> 32) * step
            q = p + rowlen
            fy = np.float32(yy & _FRACTION) * _INV_ONE
            fx = np.float32(xx & _FRACTION) * _INV_ONE
            yy += sy
            xx += sx
            _lerp_pixel(img, orow, np.uint64(c) * step, p, q, step, fy, fx, nch)


@njit(cache=True, nogil=True, fastmath={"contract"})
def _bilinear_edge_span(img, orow, c0, c1, y_row, x_row, dy, dx, h, w, nch):
    """Columns [c0, c1) near or outside the border in 'nearest' mode: ``_bilinear_span`` with the
    fixed-point position clamped into the image. Clamping makes the value continuous across the
    border, so the fixed point's tiny rounding cannot flip a decision as it could for 'constant'.
    The caller keeps c1 - c0 <= _ANCHOR and positions well inside the fixed-point range."""
    rowlen = np.uint64(w * nch)
    step = np.uint64(nch)
    y_max = np.int64(h - 1) << 32
    x_max = np.int64(w - 1) << 32
    sy = np.int64(round(dy * _ONE))
    sx = np.int64(round(dx * _ONE))
    yy = np.int64(round((y_row + c0 * dy) * _ONE))
    xx = np.int64(round((x_row + c0 * dx) * _ONE))
    for c in range(c0, c1):
        cy = min(max(yy, 0), y_max)
        cx = min(max(xx, 0), x_max)
        yi = np.uint64(cy >> 32)
        xi = np.uint64(cx >> 32)
        p = yi * rowlen + xi * step
        q = p + rowlen if cy < y_max else p  # on the last row the bottom weight is 0
        right = step if cx < x_max else np.uint64(0)
        fy = np.float32(cy & _FRACTION) * _INV_ONE
        fx = np.float32(cx & _FRACTION) * _INV_ONE
        yy += sy
        xx += sx
        _lerp_pixel(img, orow, np.uint64(c) * step, p, q, right, fy, fx, nch)


@njit(cache=True, nogil=True, inline="always")
def _edge_span_fits(c0, c1, y_row, x_row, dy, dx):
    """Whether _bilinear_edge_span may take columns [c0, c1): short enough that the fixed-point
    step's rounding stays negligible, positions far from overflowing 32.32 fixed point."""
    if c1 - c0 > _ANCHOR:
        return False
    for c in (c0, c1):
        if not (abs(y_row + c * dy) < _MAX_FIXED_SIZE and abs(x_row + c * dx) < _MAX_FIXED_SIZE):
            return False
    return True


@njit(cache=True, nogil=True)
def _nearest_span(img, orow, first, stop, r, m, w, nch):
    """Columns [first, stop) of one output row by nearest neighbour, all inside the image."""
    for c in range(first, stop):
        # scipy's exact position: rounding ties must fall the same way
        yi = int(r * m[0, 0] + c * m[0, 1] + m[0, 2] + 0.5)
        xi = int(r * m[1, 0] + c * m[1, 1] + m[1, 2] + 0.5)
        p = np.uint64((yi * w + xi) * nch)
        o = np.uint64(c * nch)
        for ch in range(nch):
            orow[o + np.uint64(ch)] = img[p + np.uint64(ch)]


@njit(cache=True, nogil=True)
def _warp_image(src, m, out, order, mode, cval, scale, offset, scratch):
    """Warp one (H, W, C) image into ``out`` (Ho, Wo, C), C-contiguous; ``scratch`` holds H*W*C float32.

    The image is first converted to scaled float32 in ``scratch`` (one
    streaming, vectorized pass: faster overall than gathering bytes from an
    image not yet in cache, and interpolation commutes with the affine
    value map). Per output row, the columns whose source lies safely inside
    the image form one interval (a line crosses a rectangle once); they take
    a lean loop. The others go through the exact border rules.
    """
    h, w, nch = src.shape
    ho, wo = out.shape[0], out.shape[1]
    rows = out.reshape(ho, wo * nch)
    fill = np.float32(cval * scale + offset)
    # A NaN, infinite or absurd matrix maps every pixel nowhere: all fill, never a wild index.
    for a in range(2):
        for b in range(3):
            if not (abs(m[a, b]) <= _MAX_MATRIX_ENTRY):
                rows[:, :] = fill
                return
    flat = np.ascontiguousarray(src).reshape(h * w * nch)  # a copy only for strided input
    for i in range(flat.shape[0]):
        scratch[i] = np.float32(flat[i]) * scale + offset
    # Fixed-point positions need h, w < 2**31; larger (absurd) images take the exact path throughout.
    fits = max(h, w) < _MAX_FIXED_SIZE
    dy = m[0, 1]
    dx = m[1, 1]
    for r in range(ho):
        orow = rows[r]
        y_row = r * m[0, 0] + m[0, 2]
        x_row = r * m[1, 0] + m[1, 2]
        # a margin keeps pixels that touch the border on the exact path
        y_first, y_stop = _inside_span(y_row, dy, _MARGIN, h - 1.0 - _MARGIN, wo)
        x_first, x_stop = _inside_span(x_row, dx, _MARGIN, w - 1.0 - _MARGIN, wo)
        first = max(y_first, x_first)
        stop = max(first, min(y_stop, x_stop)) if fits else first
        if order == 0:
            _nearest_span(scratch, orow, first, stop, r, m, w, nch)
        else:
            _bilinear_span(scratch, orow, first, stop, y_row, x_row, dy, dx, w, nch)
        if order == 1 and mode == _NEAREST and fits:
            for c0, c1 in ((0, first), (stop, wo)):
                if _edge_span_fits(c0, c1, y_row, x_row, dy, dx):
                    _bilinear_edge_span(scratch, orow, c0, c1, y_row, x_row, dy, dx, h, w, nch)
                else:
                    _clamped_span(scratch, orow, c0, c1, r, m, h, w, nch, False, fill)
        elif order == 1 and (mode == _NEAREST or mode == _CONSTANT):
            _clamped_span(scratch, orow, 0, first, r, m, h, w, nch, mode == _CONSTANT, fill)
            _clamped_span(scratch, orow, stop, wo, r, m, h, w, nch, mode == _CONSTANT, fill)
        else:
            _border_span(scratch, orow, 0, first, r, m, h, w, nch, order, mode, fill)
            _border_span(scratch, orow, stop, wo, r, m, h, w, nch, order, mode, fill)


@njit(cache=True, nogil=True)
def warp_affine_serial(src, mats, out, order, mode, cval, scale, offset):
    """Warp every image of ``src`` into ``out`` on the calling thread."""
    scratch = np.empty(src.shape[1] * src.shape[2] * src.shape[3], np.float32)
    for n in range(out.shape[0]):
        _warp_image(src[n], mats[n], out[n], order, mode, cval, np.float32(scale[n]), np.float32(offset[n]), scratch)


@njit(cache=True, nogil=True, parallel=True)
def warp_affine(src, mats, out, order, mode, cval, scale, offset, chunks):
    """Warp every image of ``src`` into ``out``, ``chunks`` images at a time.

    Pass ``chunks`` = the number of numba threads (or fewer).
    """
    n = out.shape[0]
    for k in prange(chunks):
        scratch = np.empty(src.shape[1] * src.shape[2] * src.shape[3], np.float32)
        for i in range(k, n, chunks):
            _warp_image(src[i], mats[i], out[i], order, mode, cval, np.float32(scale[i]), np.float32(offset[i]),
                        scratch)


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
