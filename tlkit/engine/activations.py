"""Activations with backward passes written in terms of the OUTPUT, so layers keep only y.

Every derivative here is expressible from y = f(z): relu (y > 0), sigmoid y(1-y),
tanh 1-y^2, softplus 1-exp(-y), softmax's Jacobian-vector product.
"""
import numpy as np


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


# Activations whose backward can be skipped by a cross-entropy computed on the logits.
FUSABLE = ("softmax", "sigmoid")

FORWARD = {"linear": linear, "relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softplus": softplus, "softmax": softmax}
BACKWARD = {
    "linear": _grad_linear, "relu": _grad_relu, "sigmoid": _grad_sigmoid,
    "tanh": _grad_tanh, "softplus": _grad_softplus, "softmax": _grad_softmax,
}


def get(identifier):
    """The activation's name: None -> 'linear'; unknown names raise a clear error."""
    if identifier is None:
        return "linear"
    if callable(identifier) and getattr(identifier, "__name__", None) in FORWARD:
        return identifier.__name__
    if isinstance(identifier, str) and identifier in FORWARD:
        return identifier
    raise ValueError(
        f"Unknown activation {identifier!r}. tlkit supports {sorted(FORWARD)} "
        "(they need a backward pass; a custom function can't be differentiated)."
    )


def apply(name, z):
    return FORWARD[name](z)


def backward(name, y, dy):
    """dL/dz from dL/dy and the activation's output y."""
    return BACKWARD[name](y, dy)
