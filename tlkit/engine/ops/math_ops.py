"""Elementwise maths, comparisons and reductions (Keras 3 ``keras.ops`` names and signatures)."""
import builtins

import numpy as np

from tlkit.engine.ops.core import expand_reduced, nondiff, normalize_axes, primitive, shape_of, unbroadcast


def _binary(name, fn, vjp_a, vjp_b):
    def vjp(g, y, a, b):
        return (unbroadcast(vjp_a(g, y, a, b), shape_of(a)), unbroadcast(vjp_b(g, y, a, b), shape_of(b)))
    return primitive(name, fn, vjp)


add = _binary("add", np.add, lambda g, y, a, b: g, lambda g, y, a, b: g)
subtract = _binary("subtract", np.subtract, lambda g, y, a, b: g, lambda g, y, a, b: -g)
multiply = _binary("multiply", np.multiply, lambda g, y, a, b: g * b, lambda g, y, a, b: g * a)
divide = _binary("divide", np.true_divide, lambda g, y, a, b: g / b, lambda g, y, a, b: -g * y / b)
true_divide = divide


def _tie_mask(a, b, first):
    """1 where the first operand wins, 0.5 on ties (the gradient is shared, as JAX does)."""
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)) if first else np.where(a < b, 1.0, np.where(a == b, 0.5, 0.0))


maximum = _binary("maximum", np.maximum, lambda g, y, a, b: g * _tie_mask(a, b, True),
                  lambda g, y, a, b: g * _tie_mask(b, a, True))
minimum = _binary("minimum", np.minimum, lambda g, y, a, b: g * _tie_mask(a, b, False),
                  lambda g, y, a, b: g * _tie_mask(b, a, False))


def _power_db(g, y, a, b):
    a = np.asarray(a)
    safe = np.where(a > 0, a, 1)
    return g * y * np.where(a > 0, np.log(safe), 0)


power = _binary("power", np.power, lambda g, y, a, b: g * b * np.power(a, np.asarray(b) - 1), _power_db)


def _unary(name, fn, vjp):
    return primitive(name, fn, lambda g, y, x: (vjp(g, y, x),))


negative = _unary("negative", np.negative, lambda g, y, x: -g)
exp = _unary("exp", np.exp, lambda g, y, x: g * y)
expm1 = _unary("expm1", np.expm1, lambda g, y, x: g * (y + 1))
log = _unary("log", np.log, lambda g, y, x: g / x)
log1p = _unary("log1p", np.log1p, lambda g, y, x: g / (1 + x))
sqrt = _unary("sqrt", np.sqrt, lambda g, y, x: g * 0.5 / y)
square = _unary("square", np.square, lambda g, y, x: g * 2 * x)
absolute = _unary("abs", np.abs, lambda g, y, x: g * np.sign(x))
abs = absolute  # noqa: A001 (Keras's name)
sin = _unary("sin", np.sin, lambda g, y, x: g * np.cos(x))
cos = _unary("cos", np.cos, lambda g, y, x: -g * np.sin(x))
tanh = _unary("tanh", np.tanh, lambda g, y, x: g * (1 - y * y))
reciprocal = _unary("reciprocal", np.reciprocal, lambda g, y, x: -g * y * y)


def rsqrt(x):
    return reciprocal(sqrt(x))


sign = nondiff(np.sign)
floor = nondiff(np.floor)
ceil = nondiff(np.ceil)
round = nondiff(np.round)  # noqa: A001
isnan = nondiff(np.isnan)
isfinite = nondiff(np.isfinite)
equal = nondiff(np.equal)
not_equal = nondiff(np.not_equal)
less = nondiff(np.less)
less_equal = nondiff(np.less_equal)
greater = nondiff(np.greater)
greater_equal = nondiff(np.greater_equal)
logical_and = nondiff(np.logical_and)
logical_or = nondiff(np.logical_or)
logical_not = nondiff(np.logical_not)
floor_divide = nondiff(np.floor_divide)
mod = nondiff(np.mod)


def _clip_forward(x, x_min, x_max):
    return np.clip(x, x_min, x_max)


def _clip_vjp(g, y, x, x_min, x_max):
    inside = (x >= x_min) & (x <= x_max)
    return g * inside, None, None


_clip = primitive("clip", _clip_forward, _clip_vjp)


def clip(x, x_min, x_max):
    """Values limited to [x_min, x_max]; the gradient passes where x is inside (bounds get none)."""
    return _clip(x, x_min, x_max)


def _where_vjp(g, y, c, a, b):
    c = np.asarray(c, bool)
    return None, unbroadcast(np.where(c, g, 0), shape_of(a)), unbroadcast(np.where(c, 0, g), shape_of(b))


_where = primitive("where", lambda c, a, b: np.where(c, a, b), _where_vjp)


def where(condition, x1=None, x2=None):
    """``x1`` where ``condition`` else ``x2``; with only a condition, the indices where it holds."""
    if x1 is None and x2 is None:
        return nondiff(np.nonzero)(condition)
    return _where(condition, x1, x2)


# ----- reductions -----
def _reduce(name, fn, vjp):
    op = primitive(name, lambda x, axis, keepdims: fn(x, axis=axis, keepdims=keepdims), vjp)

    def reduce(x, axis=None, keepdims=False):
        return op(x, axis=_axis_arg(axis), keepdims=bool(keepdims))
    reduce.__name__ = name
    return reduce


def _axis_arg(axis):
    return tuple(int(a) for a in axis) if isinstance(axis, (list, tuple)) else axis


def _sum_vjp(g, y, x, axis, keepdims):
    return (expand_reduced(g, np.shape(x), axis, keepdims),)


def _mean_vjp(g, y, x, axis, keepdims):
    n = np.prod([np.shape(x)[a] for a in normalize_axes(axis, np.ndim(x))], dtype=np.int64)
    return (expand_reduced(g / builtins.max(int(n), 1), np.shape(x), axis, keepdims),)


def _extreme_vjp(g, y, x, axis, keepdims):
    shape = np.shape(x)
    hits = (x == expand_reduced(y, shape, axis, keepdims))
    count = hits.sum(axis=normalize_axes(axis, len(shape)), keepdims=True)
    return (expand_reduced(g, shape, axis, keepdims) * hits / count,)


def _logsumexp_forward(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=normalize_axes(axis, np.ndim(x)))


def _logsumexp_vjp(g, y, x, axis, keepdims):
    shape = np.shape(x)
    return (expand_reduced(g, shape, axis, keepdims) * np.exp(x - expand_reduced(y, shape, axis, keepdims)),)


sum = _reduce("sum", np.sum, _sum_vjp)  # noqa: A001
mean = _reduce("mean", np.mean, _mean_vjp)
max = _reduce("max", np.max, _extreme_vjp)  # noqa: A001
min = _reduce("min", np.min, _extreme_vjp)  # noqa: A001
logsumexp = _reduce("logsumexp", lambda x, axis, keepdims: _logsumexp_forward(x, axis, keepdims), _logsumexp_vjp)
amax, amin = max, min


def var(x, axis=None, keepdims=False):
    """Population variance (ddof 0), as Keras."""
    centred = subtract(x, mean(x, axis=axis, keepdims=True))
    return mean(square(centred), axis=axis, keepdims=keepdims)


def std(x, axis=None, keepdims=False):
    return sqrt(var(x, axis=axis, keepdims=keepdims))


def argmax(x, axis=None, keepdims=False):
    return nondiff(np.argmax)(x, axis=axis, keepdims=keepdims)


def argmin(x, axis=None, keepdims=False):
    return nondiff(np.argmin)(x, axis=axis, keepdims=keepdims)


def argsort(x, axis=-1):
    return nondiff(np.argsort)(x, axis=axis, kind="stable")


def _cumsum_vjp(g, y, x, axis):
    if axis is None:
        return (np.flip(np.cumsum(np.flip(g.reshape(-1)))).reshape(np.shape(x)),)
    return (np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis),)


_cumsum = primitive("cumsum", lambda x, axis: np.cumsum(x, axis=axis), _cumsum_vjp)


def cumsum(x, axis=None, dtype=None):
    return _cumsum(x, axis=axis) if dtype is None else _cumsum(x.astype(dtype), axis=axis)
