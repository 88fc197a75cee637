"""Batch mixing layers with soft labels: Keras 3's MixUp (a shuffled partner, Beta(alpha, alpha)
weights per image) and torchvision's CutMix (the batch rolled by one, one Beta(alpha, alpha) box
per batch). The maths is ``tlkit.augment.mixing``; train on the labels with categorical_crossentropy."""
import numpy as np

from tlkit.augment import mixing
from tlkit.engine.layer import Layer
from tlkit.augment.layers.base import current_rng


class _BatchMixer(Layer):
    """``Layer()({"images": x, "labels": y})`` -> the same dict, mixed (``x`` alone: images only).

    Use it on batches before the model (labels are not inside a model), e.g. in a generator given
    to ``fit``; like Keras's preprocessing layers it acts when called on data (training=True)."""

    def __init__(self, alpha, data_format=None, seed=None, num_classes=None, **kwargs):
        super().__init__(**kwargs)
        if not alpha > 0:
            raise ValueError(f"alpha must be above 0, got {alpha!r}.")
        self.alpha, self.data_format, self.seed = float(alpha), data_format or "channels_last", seed
        self.num_classes = num_classes
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def rng(self):
        return current_rng(self._rng)

    def __call__(self, data, training=True):
        if not training:
            return data
        images = data["images"] if isinstance(data, dict) else data
        labels = data.get("labels") if isinstance(data, dict) else None
        if labels is not None:
            labels = mixing.one_hot_labels(labels, self.num_classes, type(self).__name__)
        x = np.asarray(images, np.float32)
        channels_first = self.data_format == "channels_first" and x.ndim == 4
        if channels_first:
            x = np.moveaxis(x, 1, -1)
        mixed, labels = self.apply(x, labels, self.draw(*x.shape[:3]))
        if channels_first:
            mixed = np.ascontiguousarray(np.moveaxis(mixed, -1, 1))
        if not isinstance(data, dict):
            return mixed
        return {**data, "images": mixed, **({} if labels is None else {"labels": labels})}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "data_format": self.data_format, "seed": self.seed,
                "num_classes": self.num_classes}


class MixUp(_BatchMixer):
    """Keras 3's MixUp: ``w * x + (1 - w) * x[perm]``, labels likewise."""

    def __init__(self, alpha=0.2, data_format=None, seed=None, num_classes=None, **kwargs):
        super().__init__(alpha, data_format, seed, num_classes, **kwargs)

    def draw(self, n, h=None, w=None):
        return mixing.mixup_params(self.rng(), n, self.alpha)

    def apply(self, images, labels, params):
        return mixing.mixup(images, labels, params)


class CutMix(_BatchMixer):
    """torchvision's CutMix: image i gets image i-1's box; labels mixed by the box's area."""

    def __init__(self, alpha=1.0, data_format=None, seed=None, num_classes=None, **kwargs):
        super().__init__(alpha, data_format, seed, num_classes, **kwargs)

    def draw(self, n, h, w):
        return mixing.cutmix_params(self.rng(), n, h, w, self.alpha)

    def apply(self, images, labels, params):
        return mixing.cutmix(images, labels, params)
