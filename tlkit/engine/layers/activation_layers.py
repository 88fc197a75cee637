"""LeakyReLU, PReLU, ELU and Softmax layers (Keras 3's arguments and defaults), over tlkit.ops."""
import numpy as np

from tlkit.engine import initializers, ops, regularizers
from tlkit.engine.layer import Layer


class LeakyReLU(Layer):
    """``LeakyReLU(negative_slope=0.3)``: x, or negative_slope * x below zero."""

    supports_masking = True  # the input's mask goes on to the output (Keras)

    def __init__(self, negative_slope=0.3, **kwargs):
        negative_slope = kwargs.pop("alpha", negative_slope)  # Keras 2's name
        super().__init__(**kwargs)
        if negative_slope is None or negative_slope < 0:
            raise ValueError(f"The negative_slope value of a Leaky ReLU layer cannot be None or negative, "
                             f"Expected a float. Received: negative_slope={negative_slope}")
        self.negative_slope = float(negative_slope)

    def call(self, inputs, training=False):
        return ops.leaky_relu(inputs, negative_slope=self.negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(Layer):
    """``ELU(alpha=1.0)``: x, or alpha * (exp(x) - 1) below zero."""

    supports_masking = True  # the input's mask goes on to the output (Keras)

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, inputs, training=False):
        negative = ops.multiply(ops.expm1(ops.minimum(inputs, 0.0)), self.alpha)
        return ops.where(ops.greater(inputs, 0), inputs, negative)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class PReLU(Layer):
    """``PReLU(shared_axes=[1, 2])``: a learned slope below zero, one per cell of the non-shared axes."""

    supports_masking = True  # the input's mask goes on to the output (Keras)

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None,
                 **kwargs):
        super().__init__(**kwargs)
        if alpha_constraint is not None:
            raise ValueError("PReLU: tlkit does not support alpha_constraint; leave it None.")
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        if shared_axes is None:
            self.shared_axes = None
        else:
            self.shared_axes = [int(a) for a in (shared_axes if isinstance(shared_axes, (list, tuple))
                                                 else [shared_axes])]

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes or []:
            if not 1 <= a < len(input_shape):
                raise ValueError(f"Layer '{self.name}' (PReLU): shared axis {a} is not a non-batch axis of an input "
                                 f"of shape {tuple(input_shape)}.")
            shape[a - 1] = 1
        if None in shape:
            raise ValueError(f"Layer '{self.name}' (PReLU): axes of unknown size {tuple(input_shape)} must be listed "
                             "in shared_axes.")
        self.alpha = self.add_weight(tuple(shape), self.alpha_initializer, "alpha",
                                     regularizer=self.alpha_regularizer)
        self.built = True

    def call(self, inputs, training=False):
        return ops.subtract(ops.relu(inputs), ops.multiply(self.alpha, ops.relu(ops.negative(inputs))))

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer), "alpha_constraint": None,
                "shared_axes": self.shared_axes}


class Softmax(Layer):
    """``Softmax(axis=-1)``."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, (int, np.integer)) else list(axis)

    def call(self, inputs, training=False):
        if isinstance(self.axis, list):  # several axes: one softmax over their joint cells
            return ops.exp(ops.subtract(inputs, ops.logsumexp(inputs, axis=tuple(self.axis), keepdims=True)))
        return ops.softmax(inputs, axis=self.axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
