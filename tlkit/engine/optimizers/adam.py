"""Adam (optionally AMSGrad), as keras.optimizers.Adam."""
import numpy as np

from tlkit.engine.kernels import optim
from tlkit.engine.optimizers.optimizer import Optimizer

_NO_SLOT = np.zeros(0, np.float32)


class Adam(Optimizer):
    """Keras's Adam, with epsilon added to sqrt(v) ("epsilon hat"), at step t = iterations + 1::

        alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        m += (g - m) * (1 - beta_1);  v += (g**2 - v) * (1 - beta_2)
        w -= alpha * m / (sqrt(v) + epsilon)          # amsgrad: sqrt(max over steps of v)

    >>> Adam(learning_rate=1e-4)
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name="adam", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def _slot_specs(self):
        specs = [("momentum", 0.0), ("velocity", 0.0)]
        return specs + [("velocity_hat", 0.0)] if self.amsgrad else specs

    def _update_step(self, index, gradient, value, learning_rate):
        key = (self.iterations, learning_rate, self.beta_1, self.beta_2, self.epsilon)
        if self.__dict__.get("_scalars_key") != key:  # the same for every variable of a step
            self._scalars_key, self._scalars = key, self._step_scalars(learning_rate)
        return optim.adam(value, gradient, self._slot("momentum", index), self._slot("velocity", index),
                          self._slot("velocity_hat", index) if self.amsgrad else _NO_SLOT, *self._scalars,
                          bool(self.amsgrad))

    def _step_scalars(self, learning_rate):
        # Float32 scalars, as Keras casts them to the variable dtype.
        step = np.float32(self.iterations + 1)
        beta_1_power = np.float32(self.beta_1) ** step
        beta_2_power = np.float32(self.beta_2) ** step
        alpha = np.float32(learning_rate) * np.sqrt(np.float32(1) - beta_2_power) / (np.float32(1) - beta_1_power)
        return (np.float32(alpha), np.float32(1 - self.beta_1), np.float32(1 - self.beta_2),
                np.float32(self.epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}
