"""Neural-network ops: activations, softmax, convolution and pooling (the engine's numba kernels as single
large ops), moments, norms and crossentropies, as in ``keras.ops``."""
import numpy as np

from tlkit.engine.kernels.geometry import padding_mode, pair
from tlkit.engine.ops import math_ops as m
from tlkit.engine.ops.core import primitive, value_of
from tlkit.engine.ops.shape_ops import cast, one_hot


def _unary(name, fn, vjp):
    return primitive(name, fn, lambda g, y, x, **p: (vjp(g, y, x, **p),))


def _sigmoid(x):
    return np.exp(-np.logaddexp(0, -x)).astype(np.result_type(x, np.float32), copy=False)


relu = _unary("relu", lambda x: np.maximum(x, 0), lambda g, y, x: g * (x > 0))
sigmoid = _unary("sigmoid", _sigmoid, lambda g, y, x: g * y * (1 - y))
softplus = _unary("softplus", lambda x: np.logaddexp(0, x).astype(np.result_type(x, np.float32), copy=False),
                  lambda g, y, x: g * _sigmoid(x))


def _silu_vjp(g, y, x):
    s = _sigmoid(x)
    return g * s * (1 + x * (1 - s))


silu = _unary("silu", lambda x: x * _sigmoid(x), _silu_vjp)
swish = silu

_GELU_C = np.sqrt(2 / np.pi)


def _gelu_forward(x, approximate):
    if approximate:
        return 0.5 * x * (1 + np.tanh(_GELU_C * (x + 0.044715 * x ** 3)))
    from tlkit.engine.kernels.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _gelu_vjp(g, y, x, approximate):
    if approximate:
        t = np.tanh(_GELU_C * (x + 0.044715 * x ** 3))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * x * x))
    from tlkit.engine.kernels.special import erf

    cdf = 0.5 * (1 + erf(x / np.sqrt(2)))
    return g * (cdf + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi))


_gelu = _unary("gelu", _gelu_forward, _gelu_vjp)


def gelu(x, approximate=True):
    return _gelu(x, approximate=bool(approximate))


_leaky = _unary("leaky_relu", lambda x, negative_slope: np.where(x > 0, x, x * negative_slope),
                lambda g, y, x, negative_slope: g * np.where(x > 0, 1, negative_slope))


def leaky_relu(x, negative_slope=0.2):
    return _leaky(x, negative_slope=negative_slope)


def _erf_vjp(g, y, x):
    return g * 2 / np.sqrt(np.pi) * np.exp(-x * x)


def _erf_forward(x):
    from tlkit.engine.kernels.special import erf as kernel

    return kernel(x)


erf = _unary("erf", _erf_forward, _erf_vjp)


def _softmax_forward(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


_softmax = primitive("softmax", _softmax_forward,
                     lambda g, y, x, axis: (y * (g - np.sum(g * y, axis=axis, keepdims=True)),))


def softmax(x, axis=-1):
    return _softmax(x, axis=axis)


def _log_softmax_forward(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


_log_softmax = primitive("log_softmax", _log_softmax_forward,
                         lambda g, y, x, axis: (g - np.exp(y) * np.sum(g, axis=axis, keepdims=True),))


def log_softmax(x, axis=-1):
    return _log_softmax(x, axis=axis)


# ----- convolution and pooling: the engine's kernels (float32, NHWC) -----
def _nhwc(data_format, what):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"tlkit.ops.{what} works channels-last (NHWC): pass data_format=None or 'channels_last'.")


def _f32(x):
    return np.ascontiguousarray(x, np.float32)


def _conv_forward(x, w, strides, padding, dilation):
    from tlkit.engine.kernels import conv

    return conv.conv2d_forward(_f32(x), _f32(w), None, strides, padding, dilation)


def _conv_vjp(g, y, x, w, strides, padding, dilation):
    from tlkit.engine.kernels import conv

    g = _f32(g)
    gx = conv.conv2d_backward_input(g, _f32(w), np.shape(x), strides, padding, dilation)
    gw, _ = conv.conv2d_backward_weights(_f32(x), g, np.shape(w), strides, padding, dilation)
    return gx, gw


_conv = primitive("conv", _conv_forward, _conv_vjp)


def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """2-D convolution of NHWC ``inputs`` with a (kh, kw, in, out) ``kernel`` (float32)."""
    _nhwc(data_format, "conv")
    if np.ndim(value_of(inputs)) != 4:
        raise ValueError("tlkit.ops.conv supports 2-D convolution only: inputs must be (batch, height, width, "
                         f"channels), got {np.ndim(value_of(inputs))} dimensions.")
    fn = "tlkit.ops.conv"
    return _conv(inputs, kernel, strides=pair(strides, "strides", fn), padding=padding_mode(padding, fn=fn),
                 dilation=pair(dilation_rate, "dilation_rate", fn))


def _max_pool_forward(x, pool_size, strides, padding):
    from tlkit.engine.kernels import pool

    y, argmax = pool.max_pool2d_forward(_f32(x), pool_size, strides, padding)
    return y, argmax


def _max_pool_vjp(g, y_res, x, pool_size, strides, padding):
    from tlkit.engine.kernels import pool

    return (pool.max_pool2d_backward(_f32(g), y_res[1], np.shape(x)),)


_max_pool = primitive("max_pool", _max_pool_forward, _max_pool_vjp, residual=True)


def _avg_pool_forward(x, pool_size, strides, padding):
    from tlkit.engine.kernels import pool

    return pool.avg_pool2d_forward(_f32(x), pool_size, strides, padding)


def _avg_pool_vjp(g, y, x, pool_size, strides, padding):
    from tlkit.engine.kernels import pool

    return (pool.avg_pool2d_backward(_f32(g), np.shape(x), pool_size, strides, padding),)


_avg_pool = primitive("average_pool", _avg_pool_forward, _avg_pool_vjp)


def _pool_args(inputs, pool_size, strides, padding, data_format, what):
    _nhwc(data_format, what)
    if np.ndim(value_of(inputs)) != 4:
        raise ValueError(f"tlkit.ops.{what} supports 2-D pooling only: inputs must be (batch, height, width, "
                         f"channels), got {np.ndim(value_of(inputs))} dimensions.")
    fn = f"tlkit.ops.{what}"
    size = pair(pool_size, "pool_size", fn)
    return dict(pool_size=size, strides=size if strides is None else pair(strides, "strides", fn),
                padding=padding_mode(padding, fn=fn))


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    return _max_pool(inputs, **_pool_args(inputs, pool_size, strides, padding, data_format, "max_pool"))


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    return _avg_pool(inputs, **_pool_args(inputs, pool_size, strides, padding, data_format, "average_pool"))


# ----- statistics and norms -----
def moments(x, axes, keepdims=False, synchronized=False):
    """(mean, variance) over ``axes``."""
    mean = m.mean(x, axis=axes, keepdims=True)
    variance = m.mean(m.square(m.subtract(x, mean)), axis=axes, keepdims=keepdims)
    if not keepdims:
        from tlkit.engine.ops.shape_ops import squeeze

        mean = squeeze(mean, tuple(axes) if not np.isscalar(axes) else axes)
    return mean, variance


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 (Keras's name)
    """numpy.linalg.norm's vector and matrix norms (matrix: None/'fro', 1, -1, inf, -inf)."""
    nd = np.ndim(value_of(x))
    axes = tuple(range(nd)) if axis is None else ((axis,) if np.isscalar(axis) else tuple(axis))
    if axis is None and ord is None or ord == "fro":
        return m.sqrt(m.sum(m.square(x), axis=axes, keepdims=keepdims))
    if len(axes) == 1 or (axis is None and nd == 1):
        a = m.abs(x)
        if ord is None or ord == 2:
            return m.sqrt(m.sum(m.square(x), axis=axes, keepdims=keepdims))
        if ord == np.inf:
            return m.max(a, axis=axes, keepdims=keepdims)
        if ord == -np.inf:
            return m.min(a, axis=axes, keepdims=keepdims)
        if ord == 0:
            return m.sum(cast(m.not_equal(x, 0), np.asarray(value_of(x)).dtype), axis=axes, keepdims=keepdims)
        if ord == 1:
            return m.sum(a, axis=axes, keepdims=keepdims)
        return m.power(m.sum(m.power(a, ord), axis=axes, keepdims=keepdims), 1.0 / ord)
    if len(axes) == 2 and ord in (1, -1, np.inf, -np.inf):
        rows, cols = axes
        summed_over, reduced = (rows, cols) if ord in (1, -1) else (cols, rows)
        sums = m.sum(m.abs(x), axis=summed_over, keepdims=True)
        pick = m.max if ord > 0 else m.min
        out = pick(sums, axis=reduced, keepdims=True)
        if not keepdims:
            from tlkit.engine.ops.shape_ops import squeeze

            out = squeeze(out, axes)
        return out
    raise ValueError(f"tlkit.ops.norm supports ord None, 'fro', 0, 1, 2, inf, -inf and p-norms of vectors and "
                     f"ord None/'fro'/1/-1/inf/-inf of matrices; got ord={ord!r} over axes {axes}.")


def normalize(x, axis=-1, order=2, epsilon=None):
    """x divided by its ``order``-norm along ``axis`` (at least ``epsilon``, default 1e-7), as Keras."""
    eps = 1e-7 if epsilon is None else epsilon
    if order == 2:
        return m.multiply(x, m.rsqrt(m.maximum(m.sum(m.square(x), axis=axis, keepdims=True), eps)))
    return m.divide(x, m.maximum(norm(x, ord=order, axis=axis, keepdims=True), eps))


# ----- crossentropies (Keras's ops.*_crossentropy: per-sample values) -----
_EPS = 1e-7


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    if from_logits:
        log_prob = log_softmax(output, axis=axis)
    else:
        output = m.divide(output, m.sum(output, axis=axis, keepdims=True))
        log_prob = m.log(m.clip(output, _EPS, 1 - _EPS))
    return m.negative(m.sum(m.multiply(target, log_prob), axis=axis))


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    target = np.asarray(value_of(target))
    if target.ndim == np.ndim(value_of(output)) and target.shape[-1] == 1:
        target = target[..., 0]
    classes = np.shape(value_of(output))[axis]
    return categorical_crossentropy(one_hot(target, classes, axis=axis, dtype=value_of(output).dtype), output,
                                    from_logits=from_logits, axis=axis)


def binary_crossentropy(target, output, from_logits=False):
    if from_logits:
        # max(x, 0) - x * t + log(1 + exp(-|x|)): stable for large |x|
        return m.add(m.subtract(relu(output), m.multiply(output, target)), m.log1p(m.exp(m.negative(m.abs(output)))))
    p = m.clip(output, _EPS, 1 - _EPS)
    return m.negative(m.add(m.multiply(target, m.log(p)), m.multiply(m.subtract(1, target), m.log(m.subtract(1, p)))))
