"""Keras's activation functions as user code calls them (``keras.activations.relu(x)`` inside ``call()``),
recorded on the tape: the ones ``tlkit.ops`` has come from there, the others are one primitive each
whose forward and backward are the engine's activation kernels (engine/activations.py). Layers still
apply activations by name through the kernels; these functions are for code that calls them."""
import numpy as np

from tlkit.engine import activations as kernels
from tlkit.engine.ops import math_ops as m
from tlkit.engine.ops import nn
from tlkit.engine.ops.core import primitive


def _float(x):
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float32)


def _from_kernels(name):
    return primitive(name, lambda x: kernels.FORWARD[name](_float(x)),
                     lambda g, y, x: (kernels.backward(name, y, g, z=x),))


_selu, _relu6, _hard_sigmoid = _from_kernels("selu"), _from_kernels("relu6"), _from_kernels("hard_sigmoid")
_hard_silu, _mish = _from_kernels("hard_silu"), _from_kernels("mish")
_elu = primitive("elu", lambda x, alpha: kernels.elu(_float(x), alpha),
                 lambda g, y, x, alpha: (g * np.where(x > 0, 1, alpha * np.exp(np.minimum(x, 0))),))


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return nn.relu(x)
    y = m.where(m.greater_equal(x, threshold), x, m.multiply(m.subtract(x, threshold), negative_slope))
    return y if max_value is None else m.minimum(y, max_value)


def linear(x):
    return x


def sigmoid(x):
    return nn.sigmoid(x)


def tanh(x):
    return m.tanh(x)


def softplus(x):
    return nn.softplus(x)


def softmax(x, axis=-1):
    return nn.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    return nn.log_softmax(x, axis=axis)


def elu(x, alpha=1.0):
    return _elu(x, alpha=float(alpha))


def selu(x):
    return _selu(x)


def leaky_relu(x, negative_slope=0.2):
    return nn.leaky_relu(x, negative_slope=negative_slope)


def relu6(x):
    return _relu6(x)


def hard_sigmoid(x):
    return _hard_sigmoid(x)


def hard_silu(x):
    return _hard_silu(x)


def silu(x):
    return nn.silu(x)


def gelu(x, approximate=False):
    """Keras's activation default is the exact GELU (``ops.gelu``'s is the tanh approximation)."""
    return nn.gelu(x, approximate=approximate)


def mish(x):
    return _mish(x)


swish = silu
hard_swish = hard_silu
