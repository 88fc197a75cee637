"""Global average and max pooling over the spatial axes of 1-D, 2-D and 3-D inputs: one number per channel.
(GlobalAveragePooling1D, which honours masks, is in pooling1d_masked.py.)"""
import numpy as np

from tlkit.engine.layer import Layer


class _GlobalPooling(Layer):
    rank = 2
    _spatial = {1: "steps", 2: "height, width", 3: "depth, height, width"}

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format
        self.keepdims = bool(keepdims)

    def build(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects {self.rank + 2}D input (batch, "
                             f"{self._spatial[self.rank]}, channels), got shape {tuple(input_shape)}.")
        self.built = True

    @property
    def _axes(self):
        return tuple(range(1, self.rank + 1))

    def compute_output_shape(self, input_shape):
        n, c = input_shape[0], input_shape[-1]
        return (n,) + (1,) * self.rank + (c,) if self.keepdims else (n, c)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class _GlobalAveragePooling(_GlobalPooling):
    def call(self, inputs, training=False):
        return inputs.mean(axis=self._axes, keepdims=self.keepdims, dtype=np.float32)

    def forward(self, inputs, training=False):
        return self.call(inputs), inputs.shape

    def backward(self, shape, dy, need_input_grad=True, need_weight_grad=True):
        cells = int(np.prod(shape[1:-1]))
        g = dy.reshape((shape[0],) + (1,) * self.rank + (shape[-1],)) / np.float32(cells)
        return np.broadcast_to(g, shape).copy(), []


class _GlobalMaxPooling(_GlobalPooling):
    def call(self, inputs, training=False):
        return inputs.max(axis=self._axes, keepdims=self.keepdims)

    def forward(self, inputs, training=False):
        n, c = inputs.shape[0], inputs.shape[-1]
        flat = inputs.reshape(n, -1, c)
        idx = flat.argmax(axis=1)  # first maximum wins ties
        y = np.take_along_axis(flat, idx[:, None, :], axis=1)[:, 0, :]
        return (y.reshape(self.compute_output_shape(inputs.shape))), (idx, inputs.shape)

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        idx, shape = cache
        n, c = shape[0], shape[-1]
        dx = np.zeros((n, int(np.prod(shape[1:-1])), c), np.float32)
        np.put_along_axis(dx, idx[:, None, :], dy.reshape(n, 1, c), axis=1)
        return dx.reshape(shape), []


class GlobalAveragePooling2D(_GlobalAveragePooling):
    rank = 2


class GlobalAveragePooling3D(_GlobalAveragePooling):
    rank = 3


class GlobalMaxPooling1D(_GlobalMaxPooling):
    rank = 1


class GlobalMaxPooling2D(_GlobalMaxPooling):
    rank = 2


class GlobalMaxPooling3D(_GlobalMaxPooling):
    rank = 3
