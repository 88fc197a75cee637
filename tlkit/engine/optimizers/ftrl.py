"""Ftrl (follow the regularized leader), as keras.optimizers.Ftrl."""
import numpy as np

from tlkit.engine.optimizers.optimizer import Optimizer


class Ftrl(Optimizer):
    """Keras 3's rule, with p = learning_rate_power and l2 = l2_regularization_strength + beta / (2 lr)::

        g2 = g + 2 * l2_shrinkage_regularization_strength * w
        new_accum = accum + g**2
        linear += g2 - (new_accum**-p - accum**-p) / lr * w
        quadratic = new_accum**-p / lr + 2 * l2
        w = (clip(linear, -l1, l1) - linear) / quadratic;  accum = new_accum

    >>> Ftrl(learning_rate=0.01, l1_regularization_strength=0.001)
    """

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 l2_shrinkage_regularization_strength=0.0, beta=0.0, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name="ftrl", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        checks = {"initial_accumulator_value": initial_accumulator_value,
                  "l1_regularization_strength": l1_regularization_strength,
                  "l2_regularization_strength": l2_regularization_strength,
                  "l2_shrinkage_regularization_strength": l2_shrinkage_regularization_strength}
        for what, v in checks.items():
            if v < 0:
                raise ValueError(f"`{what}` needs to be non-negative (>= 0). Received: {what}={v}.")
        if learning_rate_power > 0:
            raise ValueError(f"`learning_rate_power` needs to be negative or zero. Received: "
                             f"learning_rate_power={learning_rate_power}.")
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength
        self.l2_shrinkage_regularization_strength = l2_shrinkage_regularization_strength
        self.beta = beta

    def _slot_specs(self):
        return [("accumulator", self.initial_accumulator_value), ("linear", 0.0)]

    def _update_step(self, index, gradient, value, learning_rate):
        lr = np.float32(learning_rate)
        power = np.float32(-self.learning_rate_power)
        l1 = np.float32(self.l1_regularization_strength)
        l2 = np.float32(self.l2_regularization_strength) + np.float32(self.beta) / (2 * lr)
        accum, linear = self._slot("accumulator", index), self._slot("linear", index)
        grad = gradient + 2 * np.float32(self.l2_shrinkage_regularization_strength) * value
        new_accum = accum + gradient * gradient
        linear += grad - (new_accum ** power - accum ** power) / lr * value
        quadratic = new_accum ** power / lr + 2 * l2
        value[:] = (np.clip(linear, -l1, l1) - linear) / quadratic
        accum[:] = new_accum

    def get_config(self):
        return {**super().get_config(), "learning_rate_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
                "l2_shrinkage_regularization_strength": self.l2_shrinkage_regularization_strength,
                "beta": self.beta}
