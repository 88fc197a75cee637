"""GlobalAveragePooling1D with Keras's masking: the mean over the real (unmasked) steps only."""
import numpy as np

from tlkit.engine.layer import Layer
from tlkit.engine.symbolic import is_symbolic
from tlkit.engine.tensor import mask_of


def masked_mean_weights(mask, shape):
    """Per-step weights (batch, steps, 1) of a mean over the unmasked steps (all steps without a mask);
    a sample with every step masked gets zeros rather than a division by zero."""
    n, steps = shape[0], shape[1]
    if mask is None:
        return np.full((n, steps, 1), 1.0 / steps, np.float32)
    m = np.asarray(mask, np.float32)
    return (m / np.maximum(m.sum(axis=1, keepdims=True), 1.0))[..., None]


class GlobalAveragePooling1D(Layer):
    """``GlobalAveragePooling1D()``: (batch, steps, features) -> (batch, features)."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError("GlobalAveragePooling1D supports data_format='channels_last' only; transpose the input.")
        self.data_format = data_format
        self.keepdims = bool(keepdims)

    def __call__(self, inputs, training=None, mask=None, **kwargs):
        mask = mask_of(inputs) if mask is None else mask
        if mask is not None and not is_symbolic(inputs):
            kwargs["mask"] = np.asarray(mask, bool)
        return super().__call__(inputs, training=training, **kwargs)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Layer '{self.name}' (GlobalAveragePooling1D) expects 3D input (batch, steps, "
                             f"features), got shape {tuple(input_shape)}.")
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, input_shape[2]) if self.keepdims else (input_shape[0], input_shape[2])

    def call(self, inputs, training=False, mask=None):
        return self.forward(inputs, mask=mask)[0]

    def forward(self, inputs, training=False, mask=None):
        w = masked_mean_weights(mask, inputs.shape)
        y = np.einsum("nsf,nso->nof", inputs, w).astype(np.float32)
        return (y if self.keepdims else y[:, 0]), w

    def backward(self, w, dy, need_input_grad=True, need_weight_grad=True):
        return (dy.reshape(dy.shape[0], 1, -1) * w).astype(np.float32), []

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}
