"""UpSampling1D and UpSampling2D: repeat cells (nearest) or interpolate (bilinear, half-pixel
centres as Keras's image resize and torch's align_corners=False)."""
import numpy as np

from tlkit.engine.kernels.geometry import ntuple
from tlkit.engine.layer import Layer


def bilinear_matrix(size, scale):
    """(size * scale, size) float32 matrix A with resized = A @ original along one axis."""
    out = np.arange(size * scale, dtype=np.float64)
    src = np.maximum((out + 0.5) / scale - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    frac = src - low
    a = np.zeros((size * scale, size), np.float64)
    np.add.at(a, (np.arange(len(out)), low), 1.0 - frac)
    np.add.at(a, (np.arange(len(out)), high), frac)
    return a.astype(np.float32)


class _UpSampling(Layer):
    rank = 2

    def __init__(self, size, data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError("tlkit works channels-last: use data_format=None or 'channels_last'.")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"`interpolation` must be 'nearest' or 'bilinear', got {interpolation!r}.")
        self.size = ntuple(size, self.rank, "size")
        self.data_format = data_format
        self.interpolation = interpolation

    def build(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects {self.rank + 2}D input, got "
                             f"shape {tuple(input_shape)}.")
        self.built = True

    def compute_output_shape(self, input_shape):
        spatial = tuple(None if n is None else n * s for n, s in zip(input_shape[1:-1], self.size))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def call(self, inputs, training=False):
        y = inputs
        for axis, scale in enumerate(self.size, start=1):
            if self.interpolation == "nearest":
                y = np.repeat(y, scale, axis=axis)
            else:
                y = np.moveaxis(np.tensordot(bilinear_matrix(y.shape[axis], scale), y, axes=(1, axis)), 0, axis)
        return np.ascontiguousarray(y, np.float32)

    def forward(self, inputs, training=False):
        return self.call(inputs), inputs.shape

    def backward(self, shape, dy, need_input_grad=True, need_weight_grad=True):
        g = dy
        for axis, scale in reversed(list(enumerate(self.size, start=1))):
            if self.interpolation == "nearest":
                split = g.shape[:axis] + (shape[axis], scale) + g.shape[axis + 1:]
                g = g.reshape(split).sum(axis=axis + 1)
            else:
                a = bilinear_matrix(shape[axis], scale)
                g = np.moveaxis(np.tensordot(a.T, g, axes=(1, axis)), 0, axis)
        return np.ascontiguousarray(g, np.float32), []

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "data_format": self.data_format,
                "interpolation": self.interpolation}


class UpSampling1D(_UpSampling):
    """``UpSampling1D(2)``: each step repeated twice."""

    rank = 1

    def __init__(self, size=2, **kwargs):
        super().__init__(size, **kwargs)

    def get_config(self):
        config = super().get_config()
        for key in ("data_format", "interpolation"):
            config.pop(key)
        return config


class UpSampling2D(_UpSampling):
    """``UpSampling2D((2, 2), interpolation="bilinear")``."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(size, data_format, interpolation, **kwargs)
