"""SpatialDropout1D/2D, GaussianNoise, GaussianDropout and ActivityRegularization: layers active
while training only (ActivityRegularization adds its penalty to the loss)."""
import numpy as np

from tlkit.engine import ops
from tlkit.engine.layer import Layer
from tlkit.engine.layers.dropout import Dropout
from tlkit.utils.random import get_rng


class _SpatialDropout(Dropout):
    """Dropout of whole channels: one mask value per (sample, channel), shared over the spatial axes."""

    rank = 1

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(rate, noise_shape=(None,) + (1,) * self.rank + (None,), seed=seed, **kwargs)

    def build(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects {self.rank + 2}D input, got shape "
                             f"{tuple(input_shape)}.")
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.pop("noise_shape")
        return config


class SpatialDropout1D(_SpatialDropout):
    """``SpatialDropout1D(0.2)`` over (batch, steps, channels)."""


class SpatialDropout2D(_SpatialDropout):
    rank = 2

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        if data_format not in (None, "channels_last"):
            raise ValueError("tlkit works channels-last: use data_format=None or 'channels_last'.")
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = data_format

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class _Noise(Layer):
    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def _normal(self, shape, mean, stddev):
        rng = self._rng or get_rng()
        return (mean + stddev * rng.standard_normal(shape)).astype(np.float32)

    def call(self, inputs, training=False):
        return self.forward(inputs, training)[0]

    def backward(self, noise, dy, need_input_grad=True, need_weight_grad=True):
        """noise: the multiplicative noise of the call, or None (additive noise, or not training)."""
        return (dy if noise is None else dy * noise), []


class GaussianNoise(_Noise):
    """``GaussianNoise(0.1)``: adds N(0, stddev) noise while training."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if not 0 <= stddev:
            raise ValueError(f"Invalid value received for argument `stddev`. Expected a float value >= 0. "
                             f"Received: stddev={stddev}")
        self.stddev = float(stddev)

    def forward(self, inputs, training=False):
        if not training or self.stddev == 0:
            return inputs, None
        return inputs + self._normal(inputs.shape, 0.0, self.stddev), None

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(_Noise):
    """``GaussianDropout(0.2)``: multiplies by N(1, sqrt(rate / (1 - rate))) noise while training."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Invalid value received for argument `rate`. Expected a float value between 0 and 1. "
                             f"Received: rate={rate}")
        self.rate = float(rate)

    def forward(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs, None
        noise = self._normal(inputs.shape, 1.0, np.sqrt(self.rate / (1.0 - self.rate)))
        return inputs * noise, noise

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class ActivityRegularization(Layer):
    """``ActivityRegularization(l1=0.01, l2=0.0)``: passes its input through and adds
    (l1 * sum|x| + l2 * sum x^2) / batch size to the loss, as Keras 3 does."""

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.l1, self.l2 = float(l1), float(l2)

    def call(self, inputs, training=False):
        batch = float(np.shape(inputs)[0]) if np.ndim(inputs) else 1.0
        penalty = ops.add(ops.multiply(ops.sum(ops.abs(inputs)), self.l1),
                          ops.multiply(ops.sum(ops.square(inputs)), self.l2))
        self.add_loss(ops.divide(penalty, batch))
        return ops.reshape(inputs, np.shape(inputs))  # a tracked view: the gradient flows through

    def get_config(self):
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}
