"""Dropout: zero a fraction `rate` of inputs while training, scaling the rest by 1/(1-rate)."""
import numpy as np

from tlkit.engine.layer import Layer
from tlkit.utils.random import get_rng


class Dropout(Layer):

    supports_masking = True  # the input's mask goes on to the output (Keras)

    preserves_shape = True
    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Invalid value received for argument `rate`. Expected a float value between 0 and 1. Received: rate={rate}")
        self.rate = float(rate)
        self.noise_shape = noise_shape
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def _mask(self, shape):
        rng = self._rng or get_rng()
        shape = tuple(shape[i] if s is None else s for i, s in enumerate(self.noise_shape)) if self.noise_shape else shape
        return (rng.random(shape, dtype=np.float32) >= self.rate).astype(np.float32) / (1.0 - self.rate)

    def call(self, inputs, training=False):
        return self.forward(inputs, training)[0]

    def forward(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs, None
        mask = self._mask(inputs.shape)
        return inputs * mask, mask

    def backward(self, mask, dy, need_input_grad=True, need_weight_grad=True):
        return (dy if mask is None else dy * mask), []

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape, "seed": self.seed}
