"""Adadelta, as keras.optimizers.Adadelta."""
import numpy as np

from tlkit.engine.optimizers.optimizer import Optimizer


class Adadelta(Optimizer):
    """Keras 3's rule, with rms(a) = sqrt(a + epsilon)::

        accumulated_grad = rho * accumulated_grad + (1 - rho) * g**2
        delta = -rms(accumulated_delta_var) / rms(accumulated_grad) * g
        accumulated_delta_var = rho * accumulated_delta_var + (1 - rho) * delta**2
        w += lr * delta

    >>> Adadelta(learning_rate=1.0)
    """

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name="adadelta", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def _slot_specs(self):
        return [("accumulated_grad", 0.0), ("accumulated_delta_var", 0.0)]

    def _update_step(self, index, gradient, value, learning_rate):
        rho, eps = np.float32(self.rho), np.float32(self.epsilon)
        grad_acc, delta_acc = self._slot("accumulated_grad", index), self._slot("accumulated_delta_var", index)
        grad_acc[:] = rho * grad_acc + (1 - rho) * gradient * gradient
        delta = -np.sqrt(delta_acc + eps) / np.sqrt(grad_acc + eps) * gradient
        delta_acc[:] = rho * delta_acc + (1 - rho) * delta * delta
        value += np.float32(learning_rate) * delta

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}
