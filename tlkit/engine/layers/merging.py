"""Concatenate and Add: layers that merge several inputs."""
import numpy as np

from tlkit.engine.layer import Layer


def _check_list(layer, input_shape):
    if not isinstance(input_shape, list) or len(input_shape) < 2:
        raise ValueError(f"A `{type(layer).__name__}` layer should be called on a list of at least 2 inputs. "
                         f"Received: input_shape={input_shape}")


class _Merge(Layer):
    """Layers called on a list of inputs; shapes are validated by compute_output_shape."""

    def build(self, input_shape):
        _check_list(self, input_shape)
        self.compute_output_shape(input_shape)
        self.built = True


class Concatenate(_Merge):
    """``Concatenate()([a, b])`` along ``axis`` (default: channels)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def compute_output_shape(self, input_shape):
        _check_list(self, input_shape)
        ndim = len(input_shape[0])
        axis = self.axis % ndim
        for s in input_shape:
            if len(s) != ndim or any(a is not None and b is not None and a != b
                                     for i, (a, b) in enumerate(zip(s, input_shape[0])) if i not in (0, axis)):
                raise ValueError(
                    f"Layer '{self.name}' (Concatenate) requires inputs with matching shapes except for the "
                    f"concatenation axis {self.axis}. Received: input_shape={[tuple(x) for x in input_shape]}"
                )
        sizes = [s[axis] for s in input_shape]
        out = list(input_shape[0])
        out[axis] = None if any(v is None for v in sizes) else sum(sizes)
        return tuple(out)

    def call(self, inputs, training=False):
        return np.concatenate(inputs, axis=self.axis)

    def concatenates_channels(self, output_shape):
        return (self.axis % len(output_shape) == len(output_shape) - 1
                and all(d is not None for d in output_shape[1:]))

    def forward(self, inputs, training=False):
        return self.call(inputs), [x.shape[self.axis] for x in inputs]

    def backward(self, sizes, dy, need_input_grad=True, need_weight_grad=True):
        return np.split(dy, np.cumsum(sizes)[:-1], axis=self.axis), []

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Add(_Merge):
    """``Add()([a, b, ...])``: element-wise sum of inputs of the same shape."""

    def compute_output_shape(self, input_shape):
        _check_list(self, input_shape)
        first = tuple(input_shape[0])
        for s in input_shape[1:]:
            if len(s) != len(first) or any(a is not None and b is not None and a != b for a, b in zip(s, first)):
                raise ValueError(f"Layer '{self.name}' (Add): inputs must have the same shape. "
                                 f"Received: input_shape={[tuple(x) for x in input_shape]}")
        return first

    def call(self, inputs, training=False):
        out = inputs[0].copy()
        for x in inputs[1:]:
            out += x
        return out

    def forward(self, inputs, training=False):
        return self.call(inputs), len(inputs)

    def backward(self, n, dy, need_input_grad=True, need_weight_grad=True):
        return [dy] * n, []


def add(inputs, **kwargs):
    """Keras's functional form: ``add([a, b])`` is ``Add(**kwargs)([a, b])``."""
    return Add(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Keras's functional form: ``concatenate([a, b], axis)`` is ``Concatenate(axis, **kwargs)([a, b])``."""
    return Concatenate(axis=axis, **kwargs)(inputs)
