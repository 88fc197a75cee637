"""Random erasing (Keras 3's RandomErasing) as pure functions of drawn parameters, and its Pipeline step.

    >>> params = erasing_params(rng, n=32, h=224, w=224, factor=(0, 1), scale=(0.02, 0.33))
    >>> erase(batch, params, fill_value=None, value_range=(0, 255), rng=rng)   # in place
"""
import numpy as np


def erasing_params(rng, n, h, w, factor, scale):
    """Per image: a box with sides sqrt(u) of the picture's (u from ``scale`` per side), placed
    uniformly, erased when a uniform draw falls below a probability drawn from ``factor``.
    -> (boxes (N, 4) as (top, bottom, left, right), erase (N,) bool)."""
    sides = np.sqrt(rng.uniform(scale[0], scale[1], (n, 2)))
    x0 = rng.uniform(0, 1, n) * (w - sides[:, 0] * w)
    y0 = rng.uniform(0, 1, n) * (h - sides[:, 1] * h)
    probability = rng.uniform(factor[0], factor[1], n)
    erase_it = rng.uniform(0, 1, n) < probability
    return np.stack([y0, y0 + sides[:, 1] * h, x0, x0 + sides[:, 0] * w], 1), erase_it


def erase(x, params, fill_value, value_range, rng):
    """Fill the drawn boxes of the (N, H, W, C) float batch ``x`` in place: with ``fill_value``, or
    (None) Gaussian noise x value_range[1] drawn from ``rng``, clipped to ``value_range``."""
    boxes, erase_it = params
    rows, cols = np.arange(x.shape[1]), np.arange(x.shape[2])
    for i in np.flatnonzero(erase_it):
        ys = (rows >= boxes[i, 0]) & (rows < boxes[i, 1])
        xs = (cols >= boxes[i, 2]) & (cols < boxes[i, 3])
        region = x[i][np.ix_(ys, xs)]
        if fill_value is None:
            fill = rng.standard_normal(region.shape) * value_range[1]
        else:
            fill = np.broadcast_to(np.asarray(fill_value, np.float32), region.shape)
        x[i][np.ix_(ys, xs)] = np.clip(fill, *value_range)


class RandomErasing:
    """Keras 3's RandomErasing as a Pipeline step (after the fused pass before it; its values are
    the pipeline's at that point, so give ``value_range`` on that scale)."""

    def __init__(self, factor=(0.0, 1.0), scale=(0.02, 0.33), fill_value=None, value_range=(0, 255)):
        self.factor, self.scale = tuple(float(f) for f in factor), tuple(float(s) for s in scale)
        if not (0 <= self.factor[0] <= self.factor[1] <= 1 and 0 <= self.scale[0] <= self.scale[1] <= 1):
            raise ValueError(f"RandomErasing: factor and scale must be (low, high) pairs within [0, 1], got "
                             f"{factor!r} and {scale!r}.")
        self.fill_value, self.value_range = fill_value, tuple(float(v) for v in value_range)

    def transform_images(self, images, rs, parallel=True):
        x = np.array(images, np.float32)
        n, h, w = x.shape[:3]
        erase(x, erasing_params(rs, n, h, w, self.factor, self.scale), self.fill_value, self.value_range, rs)
        return x
