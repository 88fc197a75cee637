"""Activation: applies any of the activations in tlkit.engine.activations."""
from tlkit.engine import activations
from tlkit.engine.layer import Layer


class Activation(Layer):
    """``Activation("relu")``; the backward works from the output alone."""

    supports_masking = True  # the input's mask goes on to the output (Keras)

    preserves_shape = True

    supports_logit_fusion = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs, training=False):
        return activations.apply(self.activation, inputs)

    def forward(self, inputs, training=False):
        y = self.call(inputs)
        return y, (y, inputs if activations.keeps_input(self.activation) else None)

    @staticmethod
    def logits_from_cache(cache):
        return cache[1]

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True, pre_activation=False):
        y, z = cache
        return (dy if pre_activation else activations.backward(self.activation, y, dy, z)), []

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}
