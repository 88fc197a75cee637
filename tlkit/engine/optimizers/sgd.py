"""SGD with optional (Nesterov) momentum, as keras.optimizers.SGD."""
import numpy as np

from tlkit.engine.kernels import optim
from tlkit.engine.optimizers.optimizer import Optimizer


class SGD(Optimizer):
    """``w -= lr * g``; with momentum: ``velocity = momentum * velocity - lr * g; w += velocity``.

    Nesterov: ``w += momentum * velocity - lr * g`` (with the updated velocity).

    >>> SGD(learning_rate=0.01, momentum=0.9, nesterov=True)
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name="SGD", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        if isinstance(momentum, bool) or not 0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be a float between [0, 1]. Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _slot_specs(self):
        return [("momentum", 0.0)] if self.momentum != 0 else []

    def _update_step(self, index, gradient, value, learning_rate):
        lr = np.float32(learning_rate)
        if self.momentum == 0:
            return optim.sgd(value, gradient, lr)
        return optim.sgd_momentum(value, gradient, self._slot("momentum", index), lr, np.float32(self.momentum),
                           self.nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
