"""Nadam, as keras.optimizers.Nadam."""
import numpy as np

from tlkit.engine.optimizers.optimizer import Optimizer


def _mu(beta_1, step):
    """Keras 3's momentum schedule: beta_1 * (1 - 0.5 * 0.96 ** step), in float32. (torch's NAdam and
    Keras 2 use 0.96 ** (0.004 * step); torch's momentum_decay=1 gives Keras 3's.)"""
    return np.float32(beta_1) * (np.float32(1) - np.float32(0.5) * np.float32(0.96) ** np.float32(step))


class Nadam(Optimizer):
    """Keras 3's rule at step t = iterations + 1, with u_s = _mu(beta_1, s) and P_t = u_1 ... u_t::

        m += (g - m) * (1 - beta_1);  v += (g**2 - v) * (1 - beta_2)
        m_hat = u_{t+1} * m / (1 - P_t * u_{t+1}) + (1 - u_t) * g / (1 - P_t)
        w -= lr * m_hat / (sqrt(v / (1 - beta_2**t)) + epsilon)

    >>> Nadam(learning_rate=0.002)
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name="nadam", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self._u_product = (0, np.float32(1))  # (t, P_t): the running product, extended one step at a time

    def _slot_specs(self):
        return [("momentum", 0.0), ("velocity", 0.0)]

    def _product(self, t):
        """P_t, from the cached product when t is the next step (else recomputed, e.g. after set_state)."""
        done, product = self._u_product if self._u_product[0] <= t else (0, np.float32(1))
        for s in range(done + 1, t + 1):
            product = np.float32(product * _mu(self.beta_1, s))
        self._u_product = (t, product)
        return product

    def _update_step(self, index, gradient, value, learning_rate):
        t = self.iterations + 1
        u_t, u_next = _mu(self.beta_1, t), _mu(self.beta_1, t + 1)
        product = self._product(t)
        beta_1, beta_2 = np.float32(self.beta_1), np.float32(self.beta_2)
        m, v = self._slot("momentum", index), self._slot("velocity", index)
        m += (gradient - m) * (1 - beta_1)
        v += (gradient * gradient - v) * (1 - beta_2)
        m_hat = u_next * m / (1 - product * u_next) + (1 - u_t) * gradient / (1 - product)
        v_hat = v / (1 - beta_2 ** np.float32(t))
        value -= np.float32(learning_rate) * m_hat / (np.sqrt(v_hat) + np.float32(self.epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
