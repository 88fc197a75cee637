"""Keras's affine convention as matrices, and ``apply_affine_transform``.

Keras builds ``rotation @ shift @ shear @ zoom`` in (x, y) = (column, row)
coordinates, moves it to act about the image centre, then swaps the axes so
that it maps an output pixel (row, col) to the input position it is pulled
from (scipy.ndimage.affine_transform's convention). ``transform_matrix``
returns that 2x3 (row, col) matrix, with the flips folded in, so rotation,
shift, shear, zoom and flips cost one resampling pass::

    >>> m = transform_matrix(224, 224, theta=30, tx=10, flip_horizontal=True)
    >>> m.shape
    (2, 3)

Keras quirks kept on purpose, for identical pictures: ``tx`` (sampled from
``height_shift_range`` * rows) moves the picture along the columns and ``ty``
along the rows, and the centre of a non-square image is taken as
(row (w-1)/2, col (h-1)/2). These are tf.keras's and Keras 3's behaviour;
keras-preprocessing 1.1.2 instead shifted rows by ``tx`` and rotated about
(h/2 + 0.5, w/2 + 0.5), one pixel off the centre.
"""

import numpy as np

from tlkit.augment import kernels

FILL_MODES = tuple(kernels.FILL_MODES)


def transform_matrix(h, w, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0,
                     flip_horizontal=False, flip_vertical=False):
    """The 2x3 matrix mapping an output (row, col) to its input (row, col)."""
    return transform_matrices(h, w, theta, tx, ty, shear, zx, zy, flip_horizontal, flip_vertical)[0]


def transform_matrices(h, w, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0,
                       flip_horizontal=False, flip_vertical=False):
    """``transform_matrix`` for whole arrays of parameters at once: (N, 2, 3), N from broadcasting.

        >>> transform_matrices(224, 224, theta=np.array([0.0, 30.0]), zx=1.1, zy=1.1).shape
        (2, 2, 3)

    The product rotation @ shift @ shear @ zoom written out entry by entry, so
    a batch costs a few numpy operations instead of N small matrix products.
    """
    theta, tx, ty, shear, zx, zy, flip_horizontal, flip_vertical = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, np.float64)) for v in (theta, tx, ty, shear, zx, zy, flip_horizontal,
                                                             flip_vertical)))
    t = np.deg2rad(theta)
    s = np.deg2rad(shear)
    cos_t, sin_t, sin_s, cos_s = np.cos(t), np.sin(t), np.sin(s), np.cos(s)
    # (x, y) linear part and translation of rotation @ shift @ shear @ zoom
    a00 = cos_t * zx
    a01 = (cos_t * -sin_s - sin_t * cos_s) * zy
    a10 = sin_t * zx
    a11 = (sin_t * -sin_s + cos_t * cos_s) * zy
    b0 = cos_t * tx - sin_t * ty
    b1 = sin_t * tx + cos_t * ty
    ox, oy = h / 2 - 0.5, w / 2 - 0.5  # Keras passes (h, w) for (x, y): about the centre, b + o - A o
    b0 = b0 + ox - (a00 * ox + a01 * oy)
    b1 = b1 + oy - (a10 * ox + a11 * oy)
    # (x, y) -> (row, col): swap both axes
    m = np.stack([np.stack([a11, a10, b1], -1), np.stack([a01, a00, b0], -1)], -2)
    # Flips act on the output after the warp: fold them in as an output remap (m @ flip).
    fh = flip_horizontal.astype(bool)
    m[fh, :, 2] += (w - 1) * m[fh, :, 1]
    m[fh, :, 1] *= -1
    fv = flip_vertical.astype(bool)
    m[fv, :, 2] += (h - 1) * m[fv, :, 0]
    m[fv, :, 0] *= -1
    return snap(m)


def snap(m):
    """cos(90 deg) is 6e-17, not 0: snap such round-off so right angles and whole-pixel shifts are exact."""
    whole = np.rint(m)
    return np.where(np.abs(m - whole) < 1e-9, whole, m)


def check_fill_mode(fill_mode):
    if fill_mode not in kernels.FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}.")
    return kernels.FILL_MODES[fill_mode]


def check_order(order):
    if order not in (0, 1):
        raise ValueError(f"interpolation order must be 0 (nearest) or 1 (bilinear), got {order!r}; "
                         "tlkit's fused kernel supports only these two.")
    return int(order)


def warp(images, mats, fill_mode="nearest", cval=0.0, order=1, scale=None, offset=None, out=None,
         parallel=False):
    """Resample an (N, H, W, C) batch through one 2x3 matrix per image into float32.

    Every output value is ``value * scale[n] + offset[n]`` (cval too).
    ``parallel`` uses numba's thread pool (for the main thread; prefetch
    workers stay serial so that thread pools don't nest).
    """
    n, h, w, c = images.shape
    mats = np.ascontiguousarray(mats, dtype=np.float64).reshape(n, 2, 3)
    if out is None:
        out = np.empty((n, h, w, c), np.float32)
    scale = np.ones(n, np.float32) if scale is None else np.asarray(scale, np.float32).reshape(n)
    offset = np.zeros(n, np.float32) if offset is None else np.asarray(offset, np.float32).reshape(n)
    mode = check_fill_mode(fill_mode)
    order = check_order(order)
    if images.dtype == np.bool_:
        images = images.view(np.uint8)
    if parallel and n > 1:
        import numba

        kernels.warp_affine(images, mats, out, order, mode, float(cval), scale, offset,
                            min(n, numba.get_num_threads()))
    else:
        kernels.warp_affine_serial(images, mats, out, order, mode, float(cval), scale, offset)
    return out


def warp_padded(images, mats, cval=0.0, order=1, out=None, parallel=False):
    """``warp`` with torchvision's zero padding (grid_sample's, fill ``cval``): a point within half a
    pixel outside the picture still reads the edge pixel (nearest) or blends towards ``cval``
    (bilinear), where scipy's 'constant' fills it. Done by a 1-pixel ``cval`` frame around the pictures."""
    n, h, w, c = images.shape
    keeps_uint8 = images.dtype == np.uint8 and float(cval).is_integer() and 0 <= cval <= 255
    framed = np.full((n, h + 2, w + 2, c), cval, np.uint8 if keeps_uint8 else np.float32)
    framed[:, 1:-1, 1:-1] = images
    mats = np.array(mats, np.float64).reshape(n, 2, 3)
    mats[:, :, 2] += 1.0
    if out is None:
        out = np.empty((n, h, w, c), np.float32)
    return warp(framed, mats, "constant", cval, order, out=out, parallel=parallel)


def apply_affine_transform(x, theta=0, tx=0, ty=0, shear=0, zx=1, zy=1, row_axis=1, col_axis=2,
                           channel_axis=0, fill_mode="nearest", cval=0.0, order=1):
    """Keras's ``apply_affine_transform`` on one 3D image, without scipy.

        >>> y = apply_affine_transform(img, theta=90, row_axis=0, col_axis=1, channel_axis=2)

    The result has ``x``'s shape and dtype (integer images are rounded).
    """
    x = np.asarray(x)
    if np.unique([row_axis, col_axis, channel_axis]).size != 3:
        raise ValueError("'row_axis', 'col_axis', and 'channel_axis' must be distinct")
    if {row_axis, col_axis, channel_axis} != {0, 1, 2}:
        raise ValueError(f"Invalid axis' indices: {set([row_axis, col_axis, channel_axis]) - {0, 1, 2}}")
    if x.ndim != 3:
        raise ValueError("Input arrays must be multi-channel 2D images.")
    if channel_axis not in (0, 2):
        raise ValueError("Channels are allowed and the first and last dimensions.")
    if theta == 0 and tx == 0 and ty == 0 and shear == 0 and zx == 1 and zy == 1:
        return x
    hwc = x.transpose(row_axis, col_axis, channel_axis)
    h, w = hwc.shape[:2]
    m = transform_matrix(h, w, theta, tx, ty, shear, zx, zy)
    out = warp(hwc[None], m[None], fill_mode, cval, order)[0]
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    back = np.argsort((row_axis, col_axis, channel_axis))
    return np.ascontiguousarray(out.transpose(back)).astype(x.dtype, copy=False)


def apply_channel_shift(x, intensity, channel_axis=0):
    """Keras's channel shift: add ``intensity`` everywhere, clip to the image's own [min, max]."""
    x = np.asarray(x)
    out = np.clip(x + intensity, x.min(), x.max())
    return out.astype(x.dtype, copy=False) if np.issubdtype(x.dtype, np.floating) else out


def flip_axis(x, axis):
    return np.flip(np.asarray(x), axis)
