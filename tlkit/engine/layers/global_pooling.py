"""GlobalAveragePooling2D and GlobalMaxPooling2D: one number per channel."""
import numpy as np

from tlkit.engine.layer import Layer


class _GlobalPooling2D(Layer):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format
        self.keepdims = bool(keepdims)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects 4D input (batch, height, "
                             f"width, channels), got shape {tuple(input_shape)}.")
        self.built = True

    def compute_output_shape(self, input_shape):
        n, _, _, c = input_shape
        return (n, 1, 1, c) if self.keepdims else (n, c)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    def call(self, inputs, training=False):
        return inputs.mean(axis=(1, 2), keepdims=self.keepdims, dtype=np.float32)

    def forward(self, inputs, training=False):
        return self.call(inputs), inputs.shape

    def backward(self, shape, dy, need_input_grad=True, need_weight_grad=True):
        n, h, w, c = shape
        g = dy.reshape(n, 1, 1, c) / np.float32(h * w)
        return np.broadcast_to(g, shape).copy(), []


class GlobalMaxPooling2D(_GlobalPooling2D):
    def call(self, inputs, training=False):
        return inputs.max(axis=(1, 2), keepdims=self.keepdims)

    def forward(self, inputs, training=False):
        n, h, w, c = inputs.shape
        flat = inputs.reshape(n, h * w, c)
        idx = flat.argmax(axis=1)  # first maximum wins ties
        y = np.take_along_axis(flat, idx[:, None, :], axis=1)[:, 0, :]
        return (y.reshape(n, 1, 1, c) if self.keepdims else y), (idx, inputs.shape)

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        idx, (n, h, w, c) = cache
        dx = np.zeros((n, h * w, c), np.float32)
        np.put_along_axis(dx, idx[:, None, :], dy.reshape(n, 1, c), axis=1)
        return dx.reshape(n, h, w, c), []
