"""Keras 3's RandomErasing: per image, with a random probability, a random box filled with a value
(or with noise), after the warp and colour steps before it."""
from tlkit.augment.erasing import erase, erasing_params
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
        params = erasing_params(rng, n, h, w, self.factor, self.scale)

        def apply(x):
            erase(x, params, self.fill_value, self.value_range, rng)

        return ArrayStep(apply)

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor), "scale": list(self.scale),
                "fill_value": self.fill_value, "value_range": list(self.value_range)}
