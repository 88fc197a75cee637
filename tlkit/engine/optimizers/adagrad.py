"""Adagrad, as keras.optimizers.Adagrad."""
import numpy as np

from tlkit.engine.kernels import optim
from tlkit.engine.optimizers.optimizer import Optimizer


class Adagrad(Optimizer):
    """``accumulator += g**2; w -= lr * g / sqrt(accumulator + epsilon)``, accumulators start at
    ``initial_accumulator_value``.

    >>> Adagrad(learning_rate=0.01)
    """

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        if initial_accumulator_value < 0:
            raise ValueError(
                f"`initial_accumulator_value` must be non-negative. Received: {initial_accumulator_value}"
            )
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def _slot_specs(self):
        return [("accumulator", self.initial_accumulator_value)]

    def _update_step(self, index, gradient, value, learning_rate):
        return optim.adagrad(value, gradient, self._slot("accumulator", index), np.float32(learning_rate),
                      np.float32(self.epsilon))

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}
