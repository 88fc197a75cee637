"""Flatten and Reshape: layers that only move numbers around (ZeroPadding2D lives in padding.py)."""
import numpy as np

from tlkit.engine.layer import Layer
from tlkit.engine.layers.padding import ZeroPadding2D  # noqa: F401 (its former home)


class Flatten(Layer):
    """Flattens everything but the batch axis (channels-last order, as Keras)."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if any(s is None for s in rest) else int(np.prod(rest)))

    def call(self, inputs, training=False):
        return inputs.reshape(inputs.shape[0], -1)

    def forward(self, inputs, training=False):
        return self.call(inputs), inputs.shape

    def backward(self, shape, dy, need_input_grad=True, need_weight_grad=True):
        return dy.reshape(shape), []

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """``Reshape((4, 4, 8))``; one entry may be -1."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(s) for s in target_shape)
        if sum(s == -1 for s in self.target_shape) > 1:
            raise ValueError(f"Reshape: at most one -1 is allowed in target_shape, got {self.target_shape}.")

    def _resolve(self, input_shape):
        size = int(np.prod(input_shape[1:]))
        known = int(np.prod([s for s in self.target_shape if s != -1]))
        if -1 in self.target_shape:
            if known == 0 or size % known:
                raise ValueError(f"Layer '{self.name}': cannot reshape input of shape {input_shape} to {self.target_shape}.")
            return tuple(size // known if s == -1 else s for s in self.target_shape)
        if known != size:
            raise ValueError(
                f"Layer '{self.name}': total size of the new shape {self.target_shape} ({known}) "
                f"must equal the input's {tuple(input_shape[1:])} ({size})."
            )
        return self.target_shape

    def compute_output_shape(self, input_shape):
        if any(s is None for s in input_shape[1:]):
            return (input_shape[0],) + self.target_shape
        return (input_shape[0],) + self._resolve(input_shape)

    def call(self, inputs, training=False):
        return inputs.reshape((inputs.shape[0],) + self._resolve(inputs.shape))

    def forward(self, inputs, training=False):
        return self.call(inputs), inputs.shape

    def backward(self, shape, dy, need_input_grad=True, need_weight_grad=True):
        return dy.reshape(shape), []

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
