"""Dense: y = activation(x @ kernel + bias) on the last axis."""
import numpy as np

from tlkit.engine import activations
from tlkit.engine import initializers, regularizers
from tlkit.engine import layer_calls
from tlkit.engine.layer import Layer


class Dense(Layer):
    """``Dense(10, activation="softmax")``. Inputs of any rank; the product is on the last axis."""

    supports_masking = True  # the input's mask goes on to the output (Keras)

    supports_logit_fusion = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Received an invalid value for `units`, expected a positive integer. Received: units={units}")
        self.units = int(units)
        self._set_kernel_arguments(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                                   bias_regularizer)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"Layer '{self.name}' (Dense) needs a known last dimension, got input shape {input_shape}.")
        self.kernel = self.add_weight((input_shape[-1], self.units), self.kernel_initializer, "kernel",
                                      regularizer=self.kernel_regularizer)
        self.bias = self.add_weight((self.units,), self.bias_initializer, "bias",
                                    regularizer=self.bias_regularizer) if self.use_bias else None
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def _logits(self, inputs):
        z = inputs @ self.kernel.value
        if self.bias is not None:
            z += self.bias.value
        return z

    def call(self, inputs, training=False):
        return activations.apply(self.activation, self._logits(inputs))

    def forward(self, inputs, training=False):
        z = self._logits(inputs)
        y = activations.apply(self.activation, z)
        return y, (inputs, y, z if activations.keeps_input(self.activation) else None)

    @staticmethod
    def logits_from_cache(cache):
        return cache[2]

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True, pre_activation=False):
        x, y, z = cache
        dz = dy if pre_activation else activations.backward(self.activation, y, dy, z)
        grads = []
        if need_weight_grad:
            x2, dz2 = x.reshape(-1, x.shape[-1]), dz.reshape(-1, dz.shape[-1])
            grads.append((self.kernel, x2.T @ dz2))
            if self.bias is not None:
                grads.append((self.bias, dz2.sum(axis=0)))
        dx = dz @ self.kernel.value.T if need_input_grad else None
        return dx, grads

    def get_config(self):
        return {
            **super().get_config(), "units": self.units, "activation": layer_calls.activation_config(self),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        }
