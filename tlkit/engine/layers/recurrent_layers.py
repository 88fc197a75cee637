"""LSTM, GRU and SimpleRNN with Keras's arguments, defaults, weight shapes and gate orders, so weights
saved by Keras load as they are:

- LSTM: kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u,); gates i, f, c, o.
- GRU (reset_after=True): kernel (in, 3u), recurrent_kernel (u, 3u), bias (2, 3u) = input and recurrent
  biases; gates z, r, h. With reset_after=False (Keras 2's default): bias (3u,), and the reset gate
  scales the state before its recurrent product (kernels/gru_reset_before.py).
- SimpleRNN: kernel (in, u), recurrent_kernel (u, u), bias (u,).
"""
import numpy as np

from tlkit.engine.layers.recurrent import RNNBase


class LSTM(RNNBase):
    """``LSTM(32, return_sequences=True)``; ``unit_forget_bias`` starts the forget gate's bias at 1."""

    cell = "lstm"
    n_states = 2

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, u = self.bias_initializer, self.units

        def init(shape, dtype="float32"):
            return np.concatenate([base((u,), dtype), np.ones(u, dtype), base((2 * u,), dtype)])

        return init

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRU(RNNBase):
    """``GRU(32)``: Keras 3's default applies the reset gate after the recurrent product
    (reset_after=True, as cuDNN and PyTorch); ``reset_after=False`` is Keras 2's default GRU."""

    cell = "gru"

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)
        if not self.reset_after:
            self.cell = "gru_reset_before"

    def _bias_shape(self, g):
        return (2, g) if self.reset_after else (g,)

    def _biases(self):
        if self.bias is None or not self.reset_after:
            return super()._biases()
        return self.bias.value[0], self.bias.value[1]

    def _weight_grads(self, grads):
        out = super()._weight_grads(grads)
        if self.bias is not None and self.reset_after:
            out[-1] = (self.bias, np.stack([grads["bias"], grads["recurrent_bias"]]))
        return out

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}


class SimpleRNN(RNNBase):
    """``SimpleRNN(32)``: h = activation(x @ kernel + h_prev @ recurrent_kernel + bias)."""

    cell = "simple"

    def __init__(self, units, activation="tanh", **kwargs):
        kwargs.pop("recurrent_activation", None)
        super().__init__(units, activation=activation, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["recurrent_activation"]
        return config


__all__ = ["LSTM", "GRU", "SimpleRNN"]
