"""Adamax, as keras.optimizers.Adamax."""
import numpy as np

from tlkit.engine.optimizers.optimizer import Optimizer


class Adamax(Optimizer):
    """Keras 3's rule at step t = iterations + 1::

        m += (g - m) * (1 - beta_1);  u = max(beta_2 * u, |g|)
        w -= lr * m / ((1 - beta_1**t) * (u + epsilon))

    >>> Adamax(learning_rate=0.002)
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name="adamax", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def _slot_specs(self):
        return [("m", 0.0), ("u", 0.0)]

    def _update_step(self, index, gradient, value, learning_rate):
        beta_1, beta_2 = np.float32(self.beta_1), np.float32(self.beta_2)
        beta_1_power = beta_1 ** np.float32(self.iterations + 1)
        m, u = self._slot("m", index), self._slot("u", index)
        m += (gradient - m) * (1 - beta_1)
        np.maximum(beta_2 * u, np.abs(gradient), out=u)
        value -= np.float32(learning_rate) * m / ((1 - beta_1_power) * (u + np.float32(self.epsilon)))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
