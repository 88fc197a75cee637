"""A composable augmentation pipeline that compiles to the same single fused pass.

    >>> from tlkit.augment import Pipeline, RandomRotation, RandomShift, RandomFlip, Rescale
    >>> augment = Pipeline([RandomRotation(30), RandomShift(0.2, 0.2), RandomFlip("horizontal"),
    ...                     Rescale(1 / 255)], fill_mode="reflect")
    >>> batch = augment(images, seed=0)           # (N, H, W, C) uint8 -> float32
    >>> it = augment.flow_from_directory("photos/", target_size=(224, 224))

Transforms apply in the order given. Geometric ones (rotation, shift, zoom,
shear, flip) multiply into one output -> input matrix per image, about the
true image centre; linear value ones (brightness, rescale) fold into the
kernel's per-image scale and offset; a channel shift (Keras's, clipped to the
image's range) runs after the pass. So a pipeline of any length costs one
resampling pass.

torchvision's policies (RandAugment, TrivialAugmentWide: ``policies.py``) fold their
geometric ops into the same matrix; their colour ops run on the pictures before the pass
(those drawn before any geometric op) or after it, on pixel values 0-255 (so put them before
Rescale). AugMix and RandomErasing act on whole batches: they split the pipeline into
passes around them. MixUp and CutMix come last and mix the labels too (``mix``, called by
the iterators once the labels are known; ``pipeline(x, labels=y)`` on arrays).
"""
import math

import numpy as np

from tlkit.augment import affine, kernels
from tlkit.augment.file_iterators import DirectoryIterator
from tlkit.augment.iterators import NumpyArrayIterator
from tlkit.augment.policy_ops import apply_colors


class _Draw:
    """What transforms accumulate for one image."""

    def __init__(self):
        self.m = np.eye(3)          # output (row, col, 1) -> input (row, col, 1)
        self.scale, self.offset = 1.0, 0.0
        self.shift = None           # channel shift in output units
        self.before, self.after = [], []  # a policy's colour ops before / after the warp (policy_ops)

    def geometric(self, core, h, w):
        """Compose a 2x2 (row, col) map acting about the image centre (applied after what came before)."""
        cy, cx = (h - 1) / 2, (w - 1) / 2
        a = np.eye(3)
        a[:2, :2] = core
        a[:2, 2] = [cy, cx] - np.asarray(core) @ [cy, cx]
        self.m = self.m @ a

    def policy(self, before, m, after, who):
        """A policy's draw (policies.py): its matrix joins the warp, its colour ops go around it."""
        if self.scale != 1.0 or self.offset != 0.0 or self.shift is not None:
            raise ValueError(f"{who} works on pixel values 0-255: put it before Rescale, RandomBrightness and "
                             "RandomChannelShift in the Pipeline.")
        (self.after if self.after else self.before).extend(before)  # keep the order after an earlier policy
        self.m = self.m @ m
        self.after.extend(after)

    def linear(self, scale, offset=0.0):
        self.scale, self.offset = self.scale * scale, self.offset * scale + offset
        if self.shift is not None:
            self.shift *= scale


def _range(value, name, around=None):
    """A number d -> (-d, d) (or (around - d, around + d)); a pair -> itself."""
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")
        centre = 0.0 if around is None else around
        return (centre - value, centre + value)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}.") from None
    if lo > hi:
        raise ValueError(f"{name}: low {lo} is above high {hi}.")
    return lo, hi


class RandomRotation:
    """Rotate by an angle drawn from [-degrees, degrees] (or a (low, high) pair), as Keras's rotation_range."""

    def __init__(self, degrees):
        self.range = _range(degrees, "degrees")

    def draw(self, rs, d, h, w):
        t = math.radians(rs.uniform(*self.range))
        d.geometric([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]], h, w)


class RandomShift:
    """Shift by up to ``width`` / ``height``: fractions of the size when < 1, else pixels."""

    def __init__(self, width=0.0, height=0.0):
        self.width, self.height = _range(width, "width"), _range(height, "height")

    def draw(self, rs, d, h, w):
        dy = rs.uniform(*self.height)
        dx = rs.uniform(*self.width)
        dy *= h if max(abs(v) for v in self.height) < 1 else 1
        dx *= w if max(abs(v) for v in self.width) < 1 else 1
        d.m = d.m @ np.array([[1, 0, -dy], [0, 1, -dx], [0, 0, 1.0]])


class RandomZoom:
    """Zoom factors from [1 - z, 1 + z] (or a pair), drawn per axis as Keras does; < 1 zooms in."""

    def __init__(self, zoom, keep_aspect=False):
        self.range = _range(zoom, "zoom", around=1.0)
        if self.range[0] <= 0:
            raise ValueError(f"zoom factors must stay above 0, got the range {self.range}.")
        self.keep_aspect = keep_aspect

    def draw(self, rs, d, h, w):
        zy, zx = rs.uniform(*self.range, 2)
        d.geometric([[zy, 0], [0, zy if self.keep_aspect else zx]], h, w)


class RandomShear:
    """Shear by an angle from [-degrees, degrees], Keras's shear_range convention."""

    def __init__(self, degrees):
        self.range = _range(degrees, "degrees")

    def draw(self, rs, d, h, w):
        s = math.radians(rs.uniform(*self.range))
        d.geometric([[math.cos(s), 0], [-math.sin(s), 1]], h, w)


class RandomFlip:
    """Flip with probability 1/2: 'horizontal', 'vertical' or 'horizontal_and_vertical'."""

    def __init__(self, mode="horizontal"):
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(f"RandomFlip mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical', "
                             f"got {mode!r}.")
        self.mode = mode

    def draw(self, rs, d, h, w):
        if self.mode != "vertical" and rs.random_sample() < 0.5:
            d.geometric([[1, 0], [0, -1]], h, w)
        if self.mode != "horizontal" and rs.random_sample() < 0.5:
            d.geometric([[-1, 0], [0, 1]], h, w)


class RandomBrightness:
    """Multiply values by a factor from (low, high), or [1 - d, 1 + d] for a number (no clipping)."""

    def __init__(self, factor):
        self.range = _range(factor, "factor", around=1.0)

    def draw(self, rs, d, h, w):
        d.linear(rs.uniform(*self.range))


class RandomChannelShift:
    """Keras's channel shift: add one value from [-r, r] to all channels, clipped to the image's range."""

    def __init__(self, intensity):
        self.range = _range(intensity, "intensity")

    def draw(self, rs, d, h, w):
        d.shift = (d.shift or 0.0) + rs.uniform(*self.range)


class Rescale:
    """``value * scale + offset`` (e.g. ``Rescale(1 / 255)`` or ``Rescale(1 / 127.5, -1)``)."""

    def __init__(self, scale, offset=0.0):
        self.scale, self.offset = float(scale), float(offset)

    def draw(self, rs, d, h, w):
        d.linear(self.scale, self.offset)


class Pipeline:
    """Transforms applied in order as one fused pass; usable on arrays and as an iterator source."""

    data_format = "channels_last"

    def __init__(self, transforms, fill_mode="nearest", cval=0.0, interpolation_order=1, dtype="float32",
                 validation_split=0.0):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not any(hasattr(t, a) for a in ("draw", "transform_images", "mixes_labels")):
                raise TypeError(f"{t!r} is not a tlkit.augment transform (RandomRotation, RandomFlip, Rescale...).")
        self.mixers = [t for t in self.transforms if getattr(t, "mixes_labels", False)]
        if self.mixers and any(getattr(t, "mixes_labels", False) is False for t in
                               self.transforms[self.transforms.index(self.mixers[0]):]):
            raise ValueError("MixUp and CutMix mix whole batches and their labels: put them last in the Pipeline.")
        self.mixes_labels = bool(self.mixers)
        affine.check_fill_mode(fill_mode)
        affine.check_order(interpolation_order)
        if validation_split and not 0 < validation_split < 1:
            raise ValueError(f"validation_split must be strictly between 0 and 1, got {validation_split}.")
        self.fill_mode, self.cval, self.interpolation_order = fill_mode, cval, interpolation_order
        self.dtype = dtype
        self.validation_split = validation_split

    def draws(self, rs, n, h, w, transforms=None):
        out = []
        for _ in range(n):
            d = _Draw()
            for t in self.transforms if transforms is None else transforms:
                t.draw(rs, d, h, w)
            out.append(d)
        return out

    def _segments(self):
        """The transforms as runs fused into one pass, split by batch steps (AugMix); mixers excluded."""
        segments, run = [], []
        for t in self.transforms:
            if getattr(t, "mixes_labels", False):
                continue
            if hasattr(t, "transform_images"):
                segments += [run, t] if run else [t]
                run = []
            else:
                run.append(t)
        return segments + [run] if run or not segments else segments

    def transform_batch(self, images, rng, parallel=False):
        """An (N, H, W, C) batch through the transforms, with draws from the RandomState ``rng``
        (the iterators' augmenter protocol); ``parallel`` spreads the pass over threads. MixUp and
        CutMix are left to ``mix`` (they need the labels)."""
        out = images
        for segment in self._segments():
            if isinstance(segment, list):
                out = self._fused(out, segment, rng, parallel)
            else:
                out = segment.transform_images(out, rng, parallel)
        return out.astype(self.dtype, copy=False)

    def _fused(self, images, transforms, rng, parallel):
        n, h, w, c = images.shape
        draws = self.draws(rng, n, h, w, transforms)
        if any(d.before for d in draws):
            images = images.astype(np.float32)
            for i, d in enumerate(draws):
                if d.before:
                    images[i] = apply_colors(images[i], d.before)
        # An image with colour ops after the warp gets its scale and offset after them.
        late = [bool(d.after) for d in draws]
        out = affine.warp(images, affine.snap(np.stack([d.m[:2] for d in draws])), self.fill_mode, self.cval,
                          self.interpolation_order, [1.0 if k else d.scale for d, k in zip(draws, late)],
                          [0.0 if k else d.offset for d, k in zip(draws, late)], parallel=parallel)
        for i, d in enumerate(draws):
            if d.after:
                out[i] = apply_colors(out[i], d.after) * d.scale + d.offset
        shifts = np.array([np.nan if d.shift is None else d.shift for d in draws], np.float32)
        if not np.isnan(shifts).all():
            kernels.adjust_intensity(out, shifts, np.full(n, np.nan, np.float32), False)
        return out

    def mix(self, images, labels, rng):
        """MixUp / CutMix steps on a transformed batch and its labels (soft labels out)."""
        for mixer in self.mixers:
            images, labels = mixer.mix(images, labels, rng)
        return images.astype(self.dtype, copy=False), labels

    def __call__(self, images, seed=None, labels=None):
        """Augment an (N, H, W, C) batch (or one (H, W, C) image); ``seed`` makes it repeatable.
        With ``labels`` (one-hot, or integers with the mixers' num_classes): returns (images, labels)."""
        images = np.asarray(images)
        single = images.ndim == 3
        if single:
            images = images[None]
        if images.ndim != 4:
            raise ValueError(f"Pipeline expects (N, H, W, C) images or one (H, W, C) image, got shape "
                             f"{images.shape}.")
        rs = np.random.RandomState(seed) if seed is not None else np.random
        out = self.transform_batch(images, rs, parallel=True)
        if self.mixers:
            out, labels = self.mix(out, labels, rs)
        out = out[0] if single else out
        return out if labels is None else (out, labels)

    def flow(self, x, y=None, batch_size=32, shuffle=True, seed=None, **kwargs):
        """Batches from arrays, as ``ImageDataGenerator.flow``."""
        return NumpyArrayIterator(x, y, self, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                  dtype=self.dtype, **kwargs)

    def flow_from_directory(self, directory, target_size=(256, 256), batch_size=32, shuffle=True, seed=None,
                            **kwargs):
        """Batches from a folder of class subfolders, as ``ImageDataGenerator.flow_from_directory``."""
        return DirectoryIterator(directory, self, target_size=target_size, batch_size=batch_size, shuffle=shuffle,
                                 seed=seed, dtype=self.dtype, **kwargs)
