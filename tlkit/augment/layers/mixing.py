"""Keras 3's MixUp: images and labels of a batch blended with a shuffled copy of the batch, weights
drawn from Beta(alpha, alpha); the labels become soft (train with categorical_crossentropy)."""
import numpy as np

from tlkit.engine.layer import Layer
from tlkit.utils.random import get_rng


class MixUp(Layer):
    """``MixUp(alpha)({"images": x, "labels": y})`` -> the same dict, mixed (``x`` alone: images only).

    Use it on batches before the model (labels are not inside a model), e.g. in a generator given
    to ``fit``; like Keras's preprocessing layers it acts when called on data (training=True)."""

    def __init__(self, alpha=0.2, data_format=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.data_format, self.seed = float(alpha), data_format or "channels_last", seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def draw(self, n):
        rng = self._rng or get_rng()
        return rng.permutation(n), rng.beta(self.alpha, self.alpha, n)

    def mix(self, images, labels, order, weight):
        x = np.asarray(images, np.float32)
        w = weight.reshape((-1,) + (1,) * (x.ndim - 1)).astype(np.float32)
        mixed = w * x + (1 - w) * x[order]
        if labels is None:
            return mixed, None
        y = np.asarray(labels, np.float32)
        if y.ndim == 1:
            raise ValueError("MixUp needs one-hot labels (soft labels come out); convert integer labels with "
                             "tlkit.utils.to_categorical first.")
        wy = weight.reshape(-1, 1).astype(np.float32)
        return mixed, wy * y + (1 - wy) * y[order]

    def __call__(self, data, training=True):
        if not training:
            return data
        images = data["images"] if isinstance(data, dict) else data
        order, weight = self.draw(len(images))
        mixed, labels = self.mix(images, data.get("labels") if isinstance(data, dict) else None, order, weight)
        if not isinstance(data, dict):
            return mixed
        return {**data, "images": mixed, **({} if labels is None else {"labels": labels})}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "data_format": self.data_format, "seed": self.seed}
