"""Primitive ops: a forward on numpy arrays and its vector-Jacobian product, recorded on the active tape.

Each primitive is defined once (tinygrad style)::

    exp = primitive("exp", np.exp, lambda g, y, x: (g * y,))

``vjp(g, y, *inputs, **params)`` gets the output's gradient ``g``, the output ``y`` and the inputs as
numpy arrays, and returns one gradient per input (None where there is none). Composite ops are Python
functions of primitives and get their gradients for free.
"""
import numpy as np

from tlkit.engine.tape import active_tape
from tlkit.engine.tensor import Tensor, plain

PRIMITIVES = {}


class Primitive:
    __slots__ = ("name", "forward", "vjp", "residual")

    def __init__(self, name, forward, vjp, residual=False):
        self.name, self.forward, self.vjp, self.residual = name, forward, vjp, residual

    def __call__(self, *args, **params):
        return bind(self, args, params)

    def __repr__(self):
        return f"<Primitive {self.name}>"


def primitive(name, forward, vjp, residual=False):
    """Register a primitive. ``residual=True``: forward returns (output, residual) and vjp gets
    ``(output, residual)`` in place of the output (e.g. max pooling's argmax)."""
    op = Primitive(name, forward, vjp, residual)
    PRIMITIVES[name] = op
    return op


def wrap(value):
    """A numpy result as a Tensor (a view: no copy)."""
    if isinstance(value, Tensor):
        return value
    return np.asarray(value).view(Tensor)


def value_of(x):
    """The numpy operand behind ``x``: Tensors and Variables unwrap; Python numbers stay (weakly typed)."""
    if isinstance(x, (int, float, bool, complex, np.ndarray, np.generic)) and not isinstance(x, Tensor):
        return x
    if getattr(x, "_is_symbolic", False):
        raise TypeError("tlkit.ops works on arrays, not on symbolic tensors from tlkit.Input: call ops inside a "
                        "layer's call() or wrap them in a layer.")
    v = plain(x)
    return np.asarray(v) if isinstance(v, (list, tuple)) else v


def _differentiable(v):
    return isinstance(v, (np.ndarray, np.generic)) and v.dtype.kind in "fc"


def bind(op, args, params):
    vals = [value_of(a) for a in args]
    result = op.forward(*vals, **params)
    res = None
    if op.residual:
        result, res = result
    out = wrap(result)
    tape = active_tape()
    if tape is not None and out.dtype.kind in "fc":
        needs = tuple(_differentiable(v) and tape.requires_grad(a) for a, v in zip(args, vals))
        if any(needs):
            tape.record_op(op, args, vals, out, params, needs, res)
    return out


def custom_gradient_op(name, args, out, vjp):
    """Record a computation done outside the op set (e.g. a fused loss) as one op: ``vjp(g) -> grads``."""
    op = Primitive(name, None, lambda g, y, *vals: vjp(g))
    out = wrap(out)
    tape = active_tape()
    if tape is not None:
        vals = [value_of(a) for a in args]
        needs = tuple(_differentiable(v) and tape.requires_grad(a) for a, v in zip(args, vals))
        if any(needs):
            tape.record_op(op, args, vals, out, {}, needs, None)
    return out


def nondiff(fn):
    """An op without a gradient (comparisons, argmax, one_hot...): computes on values, returns a Tensor."""
    def op(*args, **kwargs):
        return wrap(fn(*[value_of(a) for a in args], **kwargs))
    op.__name__ = fn.__name__
    op.__doc__ = fn.__doc__
    return op


def unbroadcast(g, shape):
    """Sum ``g`` back to ``shape`` over the axes broadcasting added or stretched."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    if g.ndim > len(shape):
        g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def shape_of(v):
    return np.shape(v)


def normalize_axes(axis, ndim):
    """``axis`` (None, int or sequence) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(int(a) % ndim if ndim else 0 for a in axes))


def expand_reduced(g, x_shape, axis, keepdims):
    """A reduction's gradient ``g`` broadcast back to the input's shape."""
    if not keepdims:
        g = np.expand_dims(g, normalize_axes(axis, len(x_shape))) if len(x_shape) else g
    return np.broadcast_to(g, x_shape)
