"""Keras masks: ``Masking`` and the helpers that carry a mask from layer to layer.

A mask is a (batch, timesteps) boolean array, True on real steps. It rides on the array a layer
returns as its ``_keras_mask`` attribute (as in Keras 3), so it follows the data through Sequential
and Functional models without a separate channel; layers that use it (recurrent layers, masked
pooling, losses) read it with ``mask_of`` (tensor.py, beside the Tensor that carries it).
"""
import numpy as np

from tlkit.engine.layer import Layer
from tlkit.engine.tensor import attach_mask


class Masking(Layer):
    """``Masking(mask_value=0.0)``: steps whose features all equal ``mask_value`` are masked (and zeroed)."""

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def __call__(self, inputs, training=None, **kwargs):
        out = super().__call__(inputs, training=training, **kwargs)
        if isinstance(inputs, np.ndarray):
            out = attach_mask(out, self.compute_mask(np.asarray(inputs)))
        return out

    def compute_mask(self, inputs, mask=None):
        return np.any(np.asarray(inputs) != self.mask_value, axis=-1)

    def call(self, inputs, training=False):
        return self.forward(inputs)[0]

    def forward(self, inputs, training=False):
        keep = self.compute_mask(inputs)[..., None].astype(np.float32)
        return inputs * keep, keep

    def backward(self, keep, dy, need_input_grad=True, need_weight_grad=True):
        return dy * keep, []

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}
