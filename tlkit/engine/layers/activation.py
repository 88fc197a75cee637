"""Activation: applies relu, sigmoid, tanh, softmax, softplus or linear."""
from tlkit.engine import activations
from tlkit.engine.layer import Layer


class Activation(Layer):
    """``Activation("relu")``; the backward works from the output alone."""

    preserves_shape = True

    supports_logit_fusion = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs, training=False):
        return activations.apply(self.activation, inputs)

    def forward(self, inputs, training=False):
        y = self.call(inputs)
        return y, (y, inputs if self.activation in activations.FUSABLE else None)

    @staticmethod
    def logits_from_cache(cache):
        return cache[1]

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True, pre_activation=False):
        y = cache[0]
        return (dy if pre_activation else activations.backward(self.activation, y, dy)), []

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}
