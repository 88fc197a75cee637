"""Batch mixing with soft labels: MixUp (Keras 3's) and CutMix (torchvision's), as pure functions
of the images, the labels and drawn parameters, plus their ``Pipeline`` steps.

Labels come out soft (a blend of two one-hot rows): train with ``categorical_crossentropy``.

    >>> params = cutmix_params(rng, n=32, h=224, w=224, alpha=1.0)
    >>> images, labels = cutmix(images, one_hot, params)
"""
import math

import numpy as np


def one_hot_labels(labels, num_classes, who):
    """Labels as float32 one-hot rows: one-hot given, or integer labels with ``num_classes``."""
    y = np.asarray(labels)
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and num_classes not in (None, 1)):
        if num_classes is None:
            raise ValueError(f"{who} needs one-hot labels (soft labels come out): give num_classes= for integer "
                             "labels, or convert them with tlkit.utils.to_categorical first.")
        ints = y.reshape(-1).astype(np.int64)
        if ints.size and (ints.min() < 0 or ints.max() >= num_classes):
            raise ValueError(f"{who}: labels must lie in [0, {num_classes}), got {ints.min()}..{ints.max()}.")
        return np.eye(num_classes, dtype=np.float32)[ints]
    return y.astype(np.float32)


def mixup_params(rs, n, alpha):
    """Keras 3's MixUp draws: a permutation of the batch and one Beta(alpha, alpha) weight per image."""
    return rs.permutation(n), rs.beta(alpha, alpha, n)


def mixup(images, labels, params):
    """``w * x + (1 - w) * x[order]`` for images and (one-hot) labels; labels may be None."""
    order, weight = params
    x = np.asarray(images, np.float32)
    w = np.asarray(weight, np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
    mixed = w * x + (1 - w) * x[order]
    if labels is None:
        return mixed, None
    wy = np.asarray(weight, np.float32).reshape(-1, 1)
    return mixed, wy * labels + (1 - wy) * labels[order]


def cutmix_params(rs, n, h, w, alpha):
    """torchvision's CutMix draws for a batch: lam ~ Beta(alpha, alpha), a box centred at a uniform
    pixel with sides sqrt(1 - lam) of the picture's, clipped to it; lam is then corrected to the
    share of the picture the box leaves. -> ((y1, y2, x1, x2), lam)."""
    lam = float(rs.beta(alpha, alpha))
    cx, cy = min(int(rs.uniform() * w), w - 1), min(int(rs.uniform() * h), h - 1)
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * w), int(r * h)
    x1, y1 = max(cx - half_w, 0), max(cy - half_h, 0)
    x2, y2 = min(cx + half_w, w), min(cy + half_h, h)
    return (y1, y2, x1, x2), 1.0 - (x2 - x1) * (y2 - y1) / float(w * h)


def cutmix(images, labels, params):
    """Image i gets image i-1's box (the batch rolled by one, as torchvision); labels
    ``lam * y + (1 - lam) * y_rolled``. ``images`` (N, H, W, C); labels may be None."""
    (y1, y2, x1, x2), lam = params
    x = np.array(images, np.float32)
    x[:, y1:y2, x1:x2] = np.roll(x, 1, axis=0)[:, y1:y2, x1:x2]
    if labels is None:
        return x, None
    return x, lam * labels + (1.0 - lam) * np.roll(labels, 1, axis=0)


class _Mixer:
    """A Pipeline step that mixes whole batches and their labels (after every other step)."""

    mixes_labels = True

    def __init__(self, alpha, num_classes):
        if not alpha > 0:
            raise ValueError(f"alpha must be above 0, got {alpha!r}.")
        self.alpha, self.num_classes = float(alpha), num_classes

    def mix(self, images, labels, rs):
        y = None if labels is None else one_hot_labels(labels, self.num_classes, type(self).__name__)
        return self.apply(images, y, self.params(rs, *np.shape(images)[:3]))


class MixUp(_Mixer):
    """Keras 3's MixUp as a Pipeline step (Beta(alpha, alpha) weights, a shuffled partner per image)."""

    def __init__(self, alpha=0.2, num_classes=None):
        super().__init__(alpha, num_classes)

    def params(self, rs, n, h, w):
        return mixup_params(rs, n, self.alpha)

    apply = staticmethod(mixup)


class CutMix(_Mixer):
    """torchvision's CutMix as a Pipeline step (one Beta(alpha, alpha) box per batch)."""

    def __init__(self, alpha=1.0, num_classes=None):
        super().__init__(alpha, num_classes)

    def params(self, rs, n, h, w):
        return cutmix_params(rs, n, h, w, self.alpha)

    apply = staticmethod(cutmix)
