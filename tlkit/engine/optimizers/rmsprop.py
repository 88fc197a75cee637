"""RMSprop (optionally centered, with plain momentum), as keras.optimizers.RMSprop."""
import numpy as np

from tlkit.engine.kernels import optim
from tlkit.engine.optimizers.optimizer import Optimizer

_NO_SLOT = np.zeros(0, np.float32)


class RMSprop(Optimizer):
    """Keras's RMSprop::

        velocity = rho * velocity + (1 - rho) * g**2
        increment = lr * g / sqrt(velocity + epsilon)     # centered: sqrt(velocity - avg_g**2 + epsilon)
        w -= increment                                     # momentum > 0: mom = momentum * mom + increment; w -= mom

    >>> RMSprop(learning_rate=1e-3, rho=0.9, centered=True)
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name="rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def _slot_specs(self):
        specs = [("velocity", 0.0)]
        if self.momentum > 0:
            specs.append(("momentum", 0.0))
        if self.centered:
            specs.append(("average_gradient", 0.0))
        return specs

    def _update_step(self, index, gradient, value, learning_rate):
        return optim.rmsprop(value, gradient, self._slot("velocity", index),
                      self._slot("average_gradient", index) if self.centered else _NO_SLOT,
                      self._slot("momentum", index) if self.momentum > 0 else _NO_SLOT,
                      np.float32(learning_rate), np.float32(self.rho), np.float32(1 - self.rho),
                      np.float32(self.momentum), np.float32(self.epsilon), bool(self.centered))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}
