"""Flatten, Reshape and ZeroPadding2D: layers that only move numbers around."""
import numpy as np

from tlkit.engine.layer import Layer


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


class ZeroPadding2D(Layer):
    """``ZeroPadding2D(1)``, ``((top, bottom), (left, right))`` or ``(symmetric_h, symmetric_w)``."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        elif len(padding) == 2 and all(isinstance(p, int) for p in padding):
            padding = ((padding[0], padding[0]), (padding[1], padding[1]))
        self.padding = tuple(tuple(int(v) for v in p) for p in padding)
        if len(self.padding) != 2 or any(len(p) != 2 or min(p) < 0 for p in self.padding):
            raise ValueError(f"`padding` should be an int, a tuple of 2 ints or 2 tuples of 2 ints. Received: padding={padding}")
        self.data_format = data_format

    def compute_output_shape(self, input_shape):
        (t, b), (l, r) = self.padding
        n, h, w, c = input_shape
        return (n, None if h is None else h + t + b, None if w is None else w + l + r, c)

    def call(self, inputs, training=False):
        (t, b), (l, r) = self.padding
        return np.pad(inputs, ((0, 0), (t, b), (l, r), (0, 0)))

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        (t, b), (l, r) = self.padding
        return dy[:, t:dy.shape[1] - b, l:dy.shape[2] - r, :], []

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding], "data_format": self.data_format}
