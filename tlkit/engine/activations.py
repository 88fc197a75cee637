"""Activations (Keras 3's definitions and defaults) with their backward passes.

Most backwards are written in terms of the OUTPUT, so layers keep only y: relu (y > 0), sigmoid
y(1-y), tanh 1-y^2, softplus 1-exp(-y), elu/selu, leaky_relu, relu6, hard_sigmoid, softmax's and
log_softmax's Jacobian-vector products. gelu, silu, hard_silu and mish are not functions of their
output, so their backward takes the input z: layers keep z for them (``keeps_input``).
"""
import numpy as np

from tlkit.utils.registration import with_registered

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def linear(z):
    return z


def relu(z):
    return np.maximum(z, 0, out=np.empty_like(z))


def sigmoid(z):
    out = np.empty_like(z)
    pos = z >= 0
    # Two branches so exp never overflows.
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def tanh(z):
    return np.tanh(z)


def softplus(z):
    return np.logaddexp(z, 0).astype(z.dtype, copy=False)


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def elu(z, alpha=1.0):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0))).astype(z.dtype, copy=False)


def selu(z):
    return (_SELU_SCALE * elu(z, _SELU_ALPHA)).astype(z.dtype, copy=False)


def leaky_relu(z, negative_slope=0.2):
    return np.where(z > 0, z, z * np.float32(negative_slope)).astype(z.dtype, copy=False)


def relu6(z):
    return np.clip(z, 0, 6)


def hard_sigmoid(z):
    """Keras 3's: relu6(z + 3) / 6."""
    return (np.clip(z + 3, 0, 6) / 6).astype(z.dtype, copy=False)


def hard_silu(z):
    return z * hard_sigmoid(z)


def silu(z):
    return z * sigmoid(z)


def gelu(z, approximate=False):
    """Keras's activation default is the exact GELU, 0.5 z (1 + erf(z / sqrt 2))."""
    if approximate:
        return (0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))).astype(z.dtype, copy=False)
    from tlkit.engine.kernels.special import erf
    return (0.5 * z * (1 + erf(z / np.sqrt(2)))).astype(z.dtype, copy=False)


def mish(z):
    return z * np.tanh(softplus(z))


def log_softmax(z, axis=-1):
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


swish = silu
hard_swish = hard_silu


def _grad_linear(y, dy):
    return dy


def _grad_relu(y, dy):
    return dy * (y > 0)


def _grad_sigmoid(y, dy):
    return dy * y * (1.0 - y)


def _grad_tanh(y, dy):
    return dy * (1.0 - y * y)


def _grad_softplus(y, dy):
    return dy * -np.expm1(-y)


def _grad_softmax(y, dy):
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def _grad_elu(y, dy):
    return dy * np.where(y > 0, 1, y + 1)


def _grad_selu(y, dy):
    return dy * np.where(y > 0, _SELU_SCALE, y + _SELU_SCALE * _SELU_ALPHA).astype(y.dtype, copy=False)


def _grad_leaky_relu(y, dy):
    return dy * np.where(y > 0, 1, np.float32(0.2)).astype(y.dtype, copy=False)


def _grad_relu6(y, dy):
    return dy * ((y > 0) & (y < 6))


def _grad_hard_sigmoid(y, dy):
    return dy * (((y > 0) & (y < 1)) / np.float32(6))


def _grad_log_softmax(y, dy):
    return dy - np.exp(y) * dy.sum(axis=-1, keepdims=True)


# Backwards that need the input z (they get (z, y, dy)).
def _grad_gelu(z, y, dy):
    from tlkit.engine.kernels.special import erf
    cdf = 0.5 * (1 + erf(z / np.sqrt(2)))
    return dy * (cdf + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)).astype(z.dtype, copy=False)


def _grad_silu(z, y, dy):
    s = sigmoid(z)
    return dy * s * (1 + z * (1 - s))


def _grad_hard_silu(z, y, dy):
    return dy * (hard_sigmoid(z) + z * ((z > -3) & (z < 3)) / np.float32(6))


def _grad_mish(z, y, dy):
    t = np.tanh(softplus(z))
    return dy * (t + z * (1 - t * t) * sigmoid(z))


# Activations whose backward can be skipped by a cross-entropy computed on the logits.
FUSABLE = ("softmax", "sigmoid")

FORWARD = {"linear": linear, "relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softplus": softplus, "softmax": softmax,
           "elu": elu, "selu": selu, "leaky_relu": leaky_relu, "relu6": relu6, "hard_sigmoid": hard_sigmoid,
           "log_softmax": log_softmax, "gelu": gelu, "silu": silu, "hard_silu": hard_silu, "mish": mish}
BACKWARD = {
    "linear": _grad_linear, "relu": _grad_relu, "sigmoid": _grad_sigmoid,
    "tanh": _grad_tanh, "softplus": _grad_softplus, "softmax": _grad_softmax,
    "elu": _grad_elu, "selu": _grad_selu, "leaky_relu": _grad_leaky_relu, "relu6": _grad_relu6,
    "hard_sigmoid": _grad_hard_sigmoid, "log_softmax": _grad_log_softmax,
}
BACKWARD_FROM_INPUT = {"gelu": _grad_gelu, "silu": _grad_silu, "hard_silu": _grad_hard_silu, "mish": _grad_mish}
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}  # Keras's other names of the same functions


def keeps_input(name):
    """Whether a layer applying activation ``name`` must keep its input z for the backward."""
    return name in FUSABLE or name in BACKWARD_FROM_INPUT


def get(identifier):
    """The activation's name: None -> 'linear'; unknown names raise a clear error."""
    if identifier is None:
        return "linear"
    name = getattr(identifier, "__name__", None) if callable(identifier) else identifier
    if isinstance(name, str) and ALIASES.get(name, name) in FORWARD:
        return ALIASES.get(name, name)
    raise ValueError(
        f"Unknown activation {identifier!r}. tlkit supports {sorted(FORWARD) + sorted(ALIASES)}, and in Dense "
        "and the convolutions a function of yours (registered with register_keras_serializable or given in "
        "custom_objects when it is named in a config)."
    )


def resolve(identifier):
    """(name, function): a built-in activation's name and None, or ("linear", the user's function) for a
    function of user code, given or named in a config (registered, or in custom_objects): the layer then
    computes its linear output and the function runs after it, recording on the tape like any op."""
    try:
        return get(identifier), None
    except ValueError:
        objects = with_registered()  # a registered "package>name", or the plain name in custom_objects
        function = objects.get(identifier, objects.get(identifier.split(">")[-1])) if isinstance(identifier, str) \
            else identifier
        if callable(function) and not isinstance(function, type):
            return "linear", function
        raise


def apply(name, z):
    return FORWARD[name](z)


def backward(name, y, dy, z=None):
    """dL/dz from dL/dy, the activation's output y and (for ``keeps_input`` activations) its input z."""
    if name in BACKWARD_FROM_INPUT:
        return BACKWARD_FROM_INPUT[name](z, y, dy)
    return BACKWARD[name](y, dy)
