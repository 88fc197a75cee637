"""Keras 2's functional transforms (``keras.preprocessing.image.random_rotation`` and friends).

Each ``random_*`` draws its parameter from numpy's global random state exactly as Keras does
(``np.random.seed(s)`` gives Keras's value), then hands one pure ``apply_*`` function the
result, albumentations-style: sampling apart from applying. The geometric ones run on the fused
warp (``affine.apply_affine_transform``), brightness on the generator's intensity kernel, so a
picture changes the same way here and inside ``ImageDataGenerator``::

    >>> np.random.seed(0)
    >>> y = random_rotation(x, 30, row_axis=0, col_axis=1, channel_axis=2)
"""
import numpy as np

from tlkit.augment import kernels
from tlkit.augment.affine import apply_affine_transform, apply_channel_shift


def _check_range_pair(value, name):
    if len(value) != 2:
        raise ValueError(f"`{name}` should be a tuple or list of two floats. Received: {value}")


def random_rotation(x, rg, row_axis=1, col_axis=2, channel_axis=0, fill_mode="nearest", cval=0.0,
                    interpolation_order=1):
    """Rotate one 3D image by a uniform random angle in [-rg, rg] degrees."""
    theta = np.random.uniform(-rg, rg)
    return apply_affine_transform(x, theta=theta, row_axis=row_axis, col_axis=col_axis,
                                  channel_axis=channel_axis, fill_mode=fill_mode, cval=cval,
                                  order=interpolation_order)


def random_shift(x, wrg, hrg, row_axis=1, col_axis=2, channel_axis=0, fill_mode="nearest", cval=0.0,
                 interpolation_order=1):
    """Shift one 3D image by random fractions ``wrg`` of its width and ``hrg`` of its height."""
    h, w = np.shape(x)[row_axis], np.shape(x)[col_axis]
    tx = np.random.uniform(-hrg, hrg) * h  # Keras draws the height fraction first
    ty = np.random.uniform(-wrg, wrg) * w
    return apply_affine_transform(x, tx=tx, ty=ty, row_axis=row_axis, col_axis=col_axis,
                                  channel_axis=channel_axis, fill_mode=fill_mode, cval=cval,
                                  order=interpolation_order)


def random_shear(x, intensity, row_axis=1, col_axis=2, channel_axis=0, fill_mode="nearest", cval=0.0,
                 interpolation_order=1):
    """Shear one 3D image by a uniform random angle in [-intensity, intensity] degrees."""
    shear = np.random.uniform(-intensity, intensity)
    return apply_affine_transform(x, shear=shear, row_axis=row_axis, col_axis=col_axis,
                                  channel_axis=channel_axis, fill_mode=fill_mode, cval=cval,
                                  order=interpolation_order)


def random_zoom(x, zoom_range, row_axis=1, col_axis=2, channel_axis=0, fill_mode="nearest", cval=0.0,
                interpolation_order=1):
    """Zoom one 3D image by factors (zx, zy) drawn uniformly from ``zoom_range`` = (low, high)."""
    _check_range_pair(zoom_range, "zoom_range")
    if zoom_range[0] == 1 and zoom_range[1] == 1:
        zx, zy = 1, 1
    else:
        zx, zy = np.random.uniform(zoom_range[0], zoom_range[1], 2)
    return apply_affine_transform(x, zx=zx, zy=zy, row_axis=row_axis, col_axis=col_axis,
                                  channel_axis=channel_axis, fill_mode=fill_mode, cval=cval,
                                  order=interpolation_order)


def random_channel_shift(x, intensity_range, channel_axis=0):
    """Add one uniform random intensity in [-intensity_range, intensity_range] to every channel."""
    intensity = np.random.uniform(-intensity_range, intensity_range)
    return apply_channel_shift(x, intensity, channel_axis=channel_axis)


def apply_brightness_shift(x, brightness, scale=True):
    """Keras's brightness shift of one channels-last 3D image: a float32 array.

    As in Keras, the picture makes a trip through 8 bits (PIL's ``ImageEnhance.Brightness``):
    with ``scale`` it is first stretched to 0..255 and stays there; without, only a picture
    outside 0..255 is stretched, and it is mapped back to its own range afterwards.
    """
    x = np.array(x, dtype=np.float32)  # a copy: the kernel works in place
    if x.ndim != 3:
        raise ValueError(f"Expected image array to have rank 3 (single image). Got array with shape: {x.shape}")
    if x.shape[2] not in (1, 3, 4):
        raise ValueError(f"Unsupported channel number: {x.shape[2]}")
    if scale:
        x -= x.min()
        top = x.max()
        if top != 0:
            x /= top
        x *= 255
    batch = x[None]
    kernels.adjust_intensity(batch, np.full(1, np.nan, np.float32), np.full(1, brightness, np.float32),
                             x.shape[2] == 4)
    return batch[0]


def random_brightness(x, brightness_range, scale=True):
    """``apply_brightness_shift`` by a factor drawn uniformly from ``brightness_range`` = (low, high)."""
    if len(brightness_range) != 2:
        raise ValueError(f"`brightness_range should be tuple or list of two floats. Received: {brightness_range}")
    u = np.random.uniform(brightness_range[0], brightness_range[1])
    return apply_brightness_shift(x, u, scale)
