"""BatchNormalization: batch statistics while training, moving statistics otherwise."""
import numpy as np

from tlkit.engine import initializers
from tlkit.engine.layer import Layer


class BatchNormalization(Layer):
    """Normalizes over every axis but ``axis``. A frozen layer (trainable=False) always runs
    in inference mode, as in Keras, so fine-tuning a frozen base doesn't wreck its statistics."""

    preserves_shape = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape):
        dim = input_shape[self.axis]
        if dim is None:
            raise ValueError(f"Layer '{self.name}' (BatchNormalization) needs a known size on axis {self.axis}; "
                             f"got input shape {tuple(input_shape)}.")
        self._ndim = len(input_shape)
        self.gamma = self.add_weight((dim,), self.gamma_initializer, "gamma") if self.scale else None
        self.beta = self.add_weight((dim,), self.beta_initializer, "beta") if self.center else None
        self.moving_mean = self.add_weight((dim,), self.moving_mean_initializer, "moving_mean", trainable=False)
        self.moving_variance = self.add_weight((dim,), self.moving_variance_initializer, "moving_variance",
                                               trainable=False)
        self.built = True

    def _shape(self, v):
        shape = [1] * self._ndim
        shape[self.axis] = -1
        return v.reshape(shape)

    def _reduce_axes(self):
        axis = self.axis % self._ndim
        return tuple(i for i in range(self._ndim) if i != axis)

    def call(self, inputs, training=False):
        return self.forward(inputs, training)[0]

    def uses_moving_statistics(self, training):
        """Inference mode: not training, or frozen (Keras's trainable=False means inference behaviour)."""
        return not (training and self.trainable)

    def scale_and_shift(self):
        """(scale, shift) per channel with inference output = x * scale + shift; a convolution just
        before this layer folds them into its kernel and bias."""
        gamma = self.gamma.value if self.gamma is not None else np.float32(1)
        beta = self.beta.value if self.beta is not None else np.float32(0)
        scale = (gamma / np.sqrt(self.moving_variance.value + self.epsilon)).astype(np.float32)
        return scale, (beta - self.moving_mean.value * scale).astype(np.float32)

    def forward(self, inputs, training=False):
        gamma = self.gamma.value if self.gamma is not None else np.float32(1)
        beta = self.beta.value if self.beta is not None else np.float32(0)
        if self.uses_moving_statistics(training):
            scale, shift = self.scale_and_shift()
            return inputs * self._shape(scale) + self._shape(shift), inputs
        axes = self._reduce_axes()
        mean = inputs.mean(axis=axes, dtype=np.float64).astype(np.float32)
        var = inputs.var(axis=axes, dtype=np.float64).astype(np.float32)
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
        x_hat = (inputs - self._shape(mean)) * self._shape(inv_std)
        m = self.momentum
        self.moving_mean.value[...] = self.moving_mean.value * m + mean * (1 - m)
        self.moving_variance.value[...] = self.moving_variance.value * m + var * (1 - m)
        self.moving_mean.version += 1  # in place: a conv's fold of this BatchNormalization is stale
        self.moving_variance.version += 1
        y = x_hat * self._shape(np.asarray(gamma, np.float32)) + self._shape(np.asarray(beta, np.float32)) \
            if self.scale or self.center else x_hat
        return y.astype(np.float32, copy=False), (x_hat, inv_std)

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        axes = self._reduce_axes()
        if isinstance(cache, np.ndarray):  # inference mode: an affine map of the input
            inv_std = 1.0 / np.sqrt(self.moving_variance.value + self.epsilon)
            x_hat = (cache - self._shape(self.moving_mean.value)) * self._shape(inv_std)
        else:
            x_hat, inv_std = cache
        grads = []
        if need_weight_grad:
            if self.gamma is not None:
                grads.append((self.gamma, (dy * x_hat).sum(axis=axes)))
            if self.beta is not None:
                grads.append((self.beta, dy.sum(axis=axes)))
        dx = None
        if need_input_grad and isinstance(cache, np.ndarray):
            gamma = self.gamma.value if self.gamma is not None else 1
            dx = dy * self._shape(np.asarray(gamma * inv_std, np.float32))
        elif need_input_grad:
            gamma = self.gamma.value if self.gamma is not None else np.ones_like(inv_std)
            dxh = dy * self._shape(gamma)
            mean_dxh = dxh.mean(axis=axes, keepdims=True)
            mean_dxh_xh = (dxh * x_hat).mean(axis=axes, keepdims=True)
            dx = (dxh - mean_dxh - x_hat * mean_dxh_xh) * self._shape(inv_std)
        return dx, grads

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}
