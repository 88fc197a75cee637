"""ReLU with Keras's options: ``ReLU(max_value=6.0)`` is ReLU6 (MobileNet, EfficientNet-Lite).

    f(x) = max_value                          for x >= max_value
         = x                                  for threshold <= x < max_value
         = negative_slope * (x - threshold)   otherwise
"""
import numpy as np

from tlkit.engine.layer import Layer


class ReLU(Layer):

    supports_masking = True  # the input's mask goes on to the output (Keras)
    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0:
            raise ValueError(f"max_value of a ReLU layer cannot be negative, got {max_value!r}.")
        if negative_slope is None or negative_slope < 0:
            raise ValueError(f"negative_slope of a ReLU layer must be >= 0, got {negative_slope!r}.")
        if threshold is None:
            raise ValueError("threshold of a ReLU layer cannot be None; use 0.0.")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope, self.threshold = float(negative_slope), float(threshold)

    def _plain(self):
        return self.negative_slope == 0.0 and self.threshold == 0.0

    def call(self, inputs, training=False):
        x = np.asarray(inputs, np.float32)
        if self._plain():  # relu / relu6: one clip, no temporaries
            return np.clip(x, np.float32(0), None if self.max_value is None else np.float32(self.max_value))
        below = x < self.threshold
        y = np.where(below, np.float32(self.negative_slope) * (x - np.float32(self.threshold)), x)
        if self.max_value is not None:
            np.minimum(y, np.float32(self.max_value), out=y)
        return y.astype(np.float32, copy=False)

    def forward(self, inputs, training=False):
        return self.call(inputs), inputs

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        x = cache
        slope = np.where(x < self.threshold, np.float32(self.negative_slope), np.float32(1))
        if self.max_value is not None:
            slope = np.where(x >= self.max_value, np.float32(0), slope)
        return (dy * slope).astype(np.float32, copy=False), []

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}
