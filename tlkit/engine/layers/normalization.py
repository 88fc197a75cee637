"""LayerNormalization, GroupNormalization and UnitNormalization (Keras 3's arguments, defaults and
weight order gamma, beta), written over tlkit.ops so their gradients come from the tape."""
import numpy as np

from tlkit.engine import initializers, ops, regularizers
from tlkit.engine.layer import Layer


def _axes(axis, ndim, layer):
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = tuple(sorted(int(a) % ndim for a in axes))
    if any(not -ndim <= int(a) < ndim for a in axes) or 0 in out:
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}): axis {axis} is out of range for an input "
                         f"of rank {ndim} (or is the batch axis).")
    return out


class _ScaleCenter(Layer):
    """The gamma/beta arguments and weights both learnable normalizations share."""

    def __init__(self, axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                 gamma_regularizer, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, (int, np.integer)) else list(axis)
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def _add_scale_center(self, shape):
        self.gamma = self.add_weight(shape, self.gamma_initializer, "gamma",
                                     regularizer=self.gamma_regularizer) if self.scale else None
        self.beta = self.add_weight(shape, self.beta_initializer, "beta",
                                    regularizer=self.beta_regularizer) if self.center else None

    def _scale_center(self, y, broadcast_shape):
        if self.gamma is not None:
            y = ops.multiply(y, ops.reshape(self.gamma, broadcast_shape))
        if self.beta is not None:
            y = ops.add(y, ops.reshape(self.beta, broadcast_shape))
        return y

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer)}


class LayerNormalization(_ScaleCenter):
    """``LayerNormalization(axis=-1, epsilon=1e-3)``: each sample normalized over ``axis``."""

    supports_masking = True  # the input's mask goes on to the output (Keras)

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, **kwargs):
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, **kwargs)
        self.rms_scaling = bool(rms_scaling)

    def build(self, input_shape):
        self._norm_axes = _axes(self.axis, len(input_shape), self)
        shape = tuple(input_shape[a] for a in self._norm_axes)
        if None in shape:
            raise ValueError(f"Layer '{self.name}' (LayerNormalization): the normalized axes of {tuple(input_shape)} "
                             "must have known sizes.")
        self._add_scale_center(shape)
        self.built = True

    def call(self, inputs, training=False):
        ndim = np.ndim(inputs)
        shape = [np.shape(inputs)[a] if a in self._norm_axes else 1 for a in range(ndim)]
        if self.rms_scaling:  # Keras: x * rsqrt(mean(x^2) + eps) * gamma, no centring
            y = ops.multiply(inputs, ops.rsqrt(ops.add(ops.mean(ops.square(inputs), axis=self._norm_axes,
                                                                keepdims=True), self.epsilon)))
            return ops.multiply(y, ops.reshape(self.gamma, shape)) if self.gamma is not None else y
        mean, variance = ops.moments(inputs, self._norm_axes, keepdims=True)
        y = ops.multiply(ops.subtract(inputs, mean), ops.rsqrt(ops.add(variance, self.epsilon)))
        return self._scale_center(y, shape)

    def get_config(self):
        return {**super().get_config(), "rms_scaling": self.rms_scaling}


class GroupNormalization(_ScaleCenter):
    """``GroupNormalization(groups=32)``: channels split into groups, each normalized per sample."""

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, **kwargs):
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, **kwargs)
        self.groups = int(groups)

    def build(self, input_shape):
        (axis,) = _axes(self.axis, len(input_shape), self)
        channels = input_shape[axis]
        if channels is None or self.groups <= 0 or channels % self.groups:
            raise ValueError(f"Layer '{self.name}' (GroupNormalization): the {channels} channels on axis {self.axis} "
                             f"must be divisible by groups={self.groups}; pick a divisor.")
        self._channel_axis = axis
        self._add_scale_center((channels,))
        self.built = True

    def call(self, inputs, training=False):
        shape = list(np.shape(inputs))
        a, channels = self._channel_axis, shape[self._channel_axis]
        grouped = shape[:a] + [self.groups, channels // self.groups] + shape[a + 1:]
        x = ops.reshape(inputs, grouped)
        reduce = tuple(i for i in range(1, len(grouped)) if i != a)  # everything but batch and group
        mean, variance = ops.moments(x, reduce, keepdims=True)
        y = ops.reshape(ops.multiply(ops.subtract(x, mean), ops.rsqrt(ops.add(variance, self.epsilon))), shape)
        return self._scale_center(y, [channels if i == a else 1 for i in range(len(shape))])

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


class UnitNormalization(Layer):
    """``UnitNormalization(axis=-1)``: each sample scaled to unit L2 norm along ``axis``."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, (int, np.integer)) else list(axis)

    def call(self, inputs, training=False):
        axes = _axes(self.axis, np.ndim(inputs), self)
        square_sum = ops.sum(ops.square(inputs), axis=axes, keepdims=True)
        return ops.multiply(inputs, ops.rsqrt(ops.maximum(square_sum, 1e-12)))

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
