"""Lion, as keras.optimizers.Lion."""
import numpy as np

from tlkit.engine.optimizers.optimizer import Optimizer


class Lion(Optimizer):
    """Keras 3's rule: ``w -= lr * sign(beta_1 * m + (1 - beta_1) * g); m = beta_2 * m + (1 - beta_2) * g``.

    >>> Lion(learning_rate=1e-4)
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name="lion", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError(f"Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer degenerates "
                             f"to SignSGD. Received: beta_1={beta_1}.")
        self.beta_1 = beta_1
        self.beta_2 = beta_2

    def _slot_specs(self):
        return [("momentum", 0.0)]

    def _update_step(self, index, gradient, value, learning_rate):
        beta_1, beta_2 = np.float32(self.beta_1), np.float32(self.beta_2)
        m = self._slot("momentum", index)
        value -= np.float32(learning_rate) * np.sign(m * beta_1 + gradient * (1 - beta_1))
        m[:] = m * beta_2 + gradient * (1 - beta_2)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}
