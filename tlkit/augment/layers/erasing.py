"""Keras 3's RandomErasing: per image, with a random probability, a random box filled with a value
(or with noise), after the warp and colour steps before it."""
import numpy as np

from tlkit.augment.layers.base import ImagePreprocessingLayer, symmetric_factor
from tlkit.augment.layers.fusion import ArrayStep


class RandomErasing(ImagePreprocessingLayer):
    """Erase a box whose sides are sqrt(u) of the picture's (u drawn from ``scale`` per side), placed
    uniformly; image n is erased when a uniform draw falls below its probability, itself drawn from
    ``factor``. ``fill_value`` None: Gaussian noise x value_range[1], clipped to ``value_range``."""

    def __init__(self, factor=1.0, scale=(0.02, 0.33), fill_value=None, value_range=(0, 255), seed=None,
                 data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = symmetric_factor(factor, "factor", bounds=(0.0, 1.0))
        self.scale = symmetric_factor(scale, "scale", bounds=(0.0, 1.0))
        if fill_value is not None and not isinstance(fill_value, (int, float)) \
                and not (isinstance(fill_value, (tuple, list)) and len(fill_value) == 3):
            raise ValueError("The `fill_value` argument should be a number (or a list of three numbers) ")
        self.fill_value = fill_value
        self.value_range = [float(v) for v in value_range]

    def draw(self, n, h, w, training):
        if not training:
            return None
        rng = self.rng()
        sides = np.sqrt(rng.uniform(self.scale[0], self.scale[1], (n, 2)))
        x0 = rng.uniform(0, 1, n) * (w - sides[:, 0] * w)
        y0 = rng.uniform(0, 1, n) * (h - sides[:, 1] * h)
        probability = rng.uniform(self.factor[0], self.factor[1], n)
        erase = rng.uniform(0, 1, n) < probability
        boxes = np.stack([y0, y0 + sides[:, 1] * h, x0, x0 + sides[:, 0] * w], 1)
        noise_rng = rng if self.fill_value is None else None

        def apply(x):
            rows, cols = np.arange(x.shape[1]), np.arange(x.shape[2])
            for i in np.flatnonzero(erase):
                ys = (rows >= boxes[i, 0]) & (rows < boxes[i, 1])
                xs = (cols >= boxes[i, 2]) & (cols < boxes[i, 3])
                region = x[i][np.ix_(ys, xs)]
                if noise_rng is not None:
                    fill = noise_rng.standard_normal(region.shape) * self.value_range[1]
                else:
                    fill = np.broadcast_to(np.asarray(self.fill_value, np.float32), region.shape)
                x[i][np.ix_(ys, xs)] = np.clip(fill, *self.value_range)

        return ArrayStep(apply)

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor), "scale": list(self.scale),
                "fill_value": self.fill_value, "value_range": list(self.value_range)}
