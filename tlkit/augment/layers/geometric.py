"""Keras 3's geometric preprocessing layers, as matrices for the fused warp.

Each ``draw`` returns, per image, the 2x3 matrix taking an output pixel (row, col) to the source
position it is read from, with Keras 3's conventions: pixel indices (not half-pixel) for the
random transforms, about the centre ((h-1)/2, (w-1)/2); half-pixel centres for resizing, as
TensorFlow's ``resize``. Keras's projective matrix [a0, a1, a2, b0, b1, b2] acts on (x, y) =
(col, row); here it is written in (row, col): [[b1, b0, b2], [a1, a0, a2]].
"""
import numpy as np

from tlkit.augment.layers.base import ImagePreprocessingLayer, check_choice, symmetric_factor
from tlkit.augment.layers.fusion import GeometricStep

FILL_MODES = {"reflect": "reflect", "wrap": "grid-wrap", "constant": "constant", "nearest": "nearest"}
ORDERS = {"nearest": 0, "bilinear": 1}


def _eye(n):
    return np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (n, 1, 1))


def _resize_matrices(n, box, size):
    """Half-pixel-centre resize of the window ``box`` = (top, left, height, width) to ``size``."""
    top, left, bh, bw = box
    sy, sx = bh / size[0], bw / size[1]
    m = np.array([[sy, 0.0, top + 0.5 * sy - 0.5], [0.0, sx, left + 0.5 * sx - 0.5]])
    return np.tile(m, (n, 1, 1))


def _window_resize(n, box, size, order):
    """Resize the window ``box`` of the input to ``size``: a crop (a view) then a resize from it."""
    if box[2:] == size:  # a plain crop: whole-pixel shifts fuse with anything
        m = _eye(n)
        m[:, 0, 2], m[:, 1, 2] = box[0], box[1]
        return GeometricStep(m, size)
    return GeometricStep(_resize_matrices(n, (0, 0) + tuple(box[2:]), size), size, None, order, window=box)


def aspect_window(h, w, th, tw):
    """Keras's largest centred window of the target aspect (crop_to_aspect_ratio, smart_resize)."""
    ch = max(min(h, int(float(w * th) / tw)), 1)
    cw = max(min(w, int(float(h * tw) / th)), 1)
    return int(float(h - ch) / 2), int(float(w - cw) / 2), ch, cw


class _FilledTransform(ImagePreprocessingLayer):
    """A random warp that samples outside the picture: Keras's fill_mode, fill_value, interpolation."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.fill_mode = check_choice(fill_mode, "fill_mode", FILL_MODES)
        self.interpolation = check_choice(interpolation, "interpolation", ORDERS)
        self.fill_value = float(fill_value)

    def _step(self, mats, h, w):
        return GeometricStep(mats, (h, w), (FILL_MODES[self.fill_mode], self.fill_value),
                             ORDERS[self.interpolation])

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value}


class RandomFlip(ImagePreprocessingLayer):
    """Flip each image with probability 1/2 ("horizontal", "vertical" or both with one draw)."""

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        check_choice(mode, "mode", ("horizontal", "vertical", "horizontal_and_vertical"))
        self.mode = mode

    def draw(self, n, h, w, training):
        if not training:
            return None
        flips = self.rng().random(n) <= 0.5
        m = _eye(n)
        if "horizontal" in self.mode:
            m[flips, 1, 1], m[flips, 1, 2] = -1.0, w - 1.0
        if "vertical" in self.mode:
            m[flips, 0, 0], m[flips, 0, 2] = -1.0, h - 1.0
        return GeometricStep(m, (h, w))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class RandomRotation(_FilledTransform):
    """Rotate by ``factor`` x 360 degrees, drawn per image (``factor`` = f or (lower, upper))."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.factor = symmetric_factor(factor, "factor")

    def draw(self, n, h, w, training):
        if not training:
            return None
        angle = np.deg2rad(self.rng().uniform(self.factor[0] * 360.0, self.factor[1] * 360.0, n))
        cos, sin = np.cos(angle), np.sin(angle)
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        a0, a1, b0, b1 = cos, -sin, sin, cos
        a2 = cx - cx * a0 - cy * a1
        b2 = cy - cx * b0 - cy * b1
        mats = np.stack([np.stack([b1, b0, b2], -1), np.stack([a1, a0, a2], -1)], -2)
        return self._step(mats, h, w)

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor)}


def _axis_factor(factor, name, inclusive_low):
    """RandomZoom/RandomTranslation's factor: a number f in (-1, 1] -> (-f, f), or a sorted pair."""
    message = ("The `height_factor` and `width_factor` arguments should be a number (or a list of two "
               f"numbers) in the range [-1.0, 1.0]. Received: {name}={factor}")
    values = factor if isinstance(factor, (tuple, list)) else [factor]
    if len(values) not in (1, 2) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(message)
    for v in values:
        if v > 1.0 or v < -1.0 or (not inclusive_low and v == -1.0):
            raise ValueError(message)
    return tuple(sorted(values)) if len(values) == 2 else (-abs(values[0]), abs(values[0]))


class RandomZoom(_FilledTransform):
    """Zoom by 1 + a factor drawn from ``height_factor`` (and ``width_factor``, else the same draw):
    a positive factor zooms out, a negative one in, as Keras 3."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor = height_factor
        self.width_factor = width_factor
        self._height = _axis_factor(height_factor, "height_factor", False)
        self._width = None if width_factor is None else _axis_factor(width_factor, "width_factor", False)

    def draw(self, n, h, w, training):
        if not training:
            return None
        rng = self.rng()
        zy = rng.uniform(1.0 + self._height[0], 1.0 + self._height[1], n)
        zx = zy if self._width is None else rng.uniform(1.0 + self._width[0], 1.0 + self._width[1], n)
        z = np.zeros(n)
        mats = np.stack([np.stack([zy, z, (h - 1) / 2.0 * (1 - zy)], -1),
                         np.stack([z, zx, (w - 1) / 2.0 * (1 - zx)], -1)], -2)
        return self._step(mats, h, w)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomTranslation(_FilledTransform):
    """Shift by fractions of the height and width drawn per image."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor = height_factor
        self.width_factor = width_factor
        self._height = _axis_factor(height_factor, "height_factor", True)
        self._width = _axis_factor(width_factor, "width_factor", True)

    def draw(self, n, h, w, training):
        if not training:
            return None
        rng = self.rng()
        dy = rng.uniform(self._height[0], self._height[1], n) * h  # Keras draws the height first
        dx = rng.uniform(self._width[0], self._width[1], n) * w
        m = _eye(n)
        m[:, 0, 2], m[:, 1, 2] = -dy, -dx
        return self._step(m, h, w)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class _Sized(ImagePreprocessingLayer):
    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.height, self.width = int(height), int(width)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        rows = -3 if self.data_format == "channels_last" else -2
        shape[rows], shape[rows + 1] = self.height, self.width
        return tuple(shape)

    def _fit_window(self, n, h, w):
        """Keras's smart resize: the largest centred window of the target aspect, resized (bilinear)."""
        return _window_resize(n, aspect_window(h, w, self.height, self.width), (self.height, self.width), 1)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


class RandomCrop(_Sized):
    """Training: one random (height, width) window for the batch, as Keras; at inference, or when
    the picture is not larger than the window, the largest centred window of that aspect, resized."""

    def draw(self, n, h, w, training):
        if training and h > self.height and w > self.width:
            rng = self.rng()
            top = int(rng.uniform(0, h - self.height + 1))
            left = int(rng.uniform(0, w - self.width + 1))
            m = _eye(n)
            m[:, 0, 2], m[:, 1, 2] = top, left
            return GeometricStep(m, (self.height, self.width))
        return self._fit_window(n, h, w)


class CenterCrop(_Sized):
    """The centred (height, width) window; a smaller picture is smart-resized, as Keras."""

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(height, width, data_format=data_format, **kwargs)

    def draw(self, n, h, w, training):
        if h >= self.height and w >= self.width:
            m = _eye(n)
            m[:, 0, 2], m[:, 1, 2] = (h - self.height) // 2, (w - self.width) // 2
            return GeometricStep(m, (self.height, self.width))
        return self._fit_window(n, h, w)

    def get_config(self):
        config = super().get_config()
        config.pop("seed")
        return config


class Resizing(_Sized):
    """Resize to (height, width), optionally cropping or padding to the target aspect first."""

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                 fill_mode="constant", fill_value=0.0, antialias=False, data_format=None, **kwargs):
        super().__init__(height, width, data_format=data_format, **kwargs)
        if interpolation not in ORDERS:
            raise ValueError(f"Resizing: interpolation {interpolation!r} is not supported by tlkit's warp; use "
                             "'bilinear' or 'nearest'.")
        if antialias:
            raise ValueError("Resizing: antialias=True is not supported by tlkit's warp; leave it False.")
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError("Only one of `crop_to_aspect_ratio` and `pad_to_aspect_ratio` can be True.")
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio = bool(pad_to_aspect_ratio)
        self.fill_mode = fill_mode
        self.fill_value = float(fill_value)
        self.antialias = False

    def draw(self, n, h, w, training):
        size, order, fill = (self.height, self.width), ORDERS[self.interpolation], None
        box = (0, 0, h, w)
        if self.crop_to_aspect_ratio:
            return _window_resize(n, aspect_window(h, w, self.height, self.width), size, order)
        if self.pad_to_aspect_ratio:
            ph = max(h, int(float(w * self.height) / self.width))
            pw = max(w, int(float(h * self.width) / self.height))
            top, left = int(float(ph - h) / 2), int(float(pw - w) / 2)
            box = (-top, -left, h + 2 * top, w + 2 * left)
            if top or left:
                fill = ("constant", self.fill_value)
        if box == (0, 0) + size:
            return None
        return GeometricStep(_resize_matrices(n, box, size), size, fill, order)

    def get_config(self):
        config = super().get_config()
        config.pop("seed")
        return {**config, "interpolation": self.interpolation, "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio, "fill_mode": self.fill_mode,
                "fill_value": self.fill_value, "antialias": self.antialias}
