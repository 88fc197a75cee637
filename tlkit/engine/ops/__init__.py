"""``tlkit.ops``: Keras 3's op names on numpy arrays, each recording on the GradientTape with its
vector-Jacobian product (see core.py); results are Tensors (numpy arrays whose operators stay
differentiable).

>>> from tlkit import ops
>>> with tlkit.GradientTape() as tape:
...     loss = ops.mean(ops.square(ops.matmul(x, w) - y))
>>> dw = tape.gradient(loss, w)
"""
from tlkit.engine.ops.core import PRIMITIVES, custom_gradient_op  # noqa: F401
from tlkit.engine.ops.linalg import dot, einsum, matmul, tensordot, vdot
from tlkit.engine.ops.math_ops import (abs, absolute, add, amax, amin, argmax, argmin, argsort, ceil, clip, cos,
                                       cumsum, divide, equal, exp, expm1, floor, floor_divide, greater,
                                       greater_equal, isfinite, isnan, less, less_equal, log, log1p,
                                       logical_and, logical_not, logical_or, logsumexp, max, maximum, mean, min,
                                       minimum, mod, multiply, negative, not_equal, power, reciprocal, round,
                                       rsqrt, sign, sin, sqrt, square, std, subtract, sum, tanh, true_divide, var,
                                       where)
from tlkit.engine.ops.nn import (average_pool, binary_crossentropy, categorical_crossentropy, conv, erf, gelu,
                                 leaky_relu, log_softmax, max_pool, moments, norm, normalize, relu, sigmoid, silu,
                                 softmax, softplus, sparse_categorical_crossentropy, swish)
from tlkit.engine.ops.shape_ops import (arange, broadcast_to, cast, concatenate, convert_to_numpy,
                                        convert_to_tensor, expand_dims, eye, full, full_like, getitem, moveaxis,
                                        ndim, one_hot, ones, ones_like, reshape, shape, size, sort, split, squeeze,
                                        stack, stop_gradient, swapaxes, take, take_along_axis, top_k, transpose,
                                        unstack, zeros, zeros_like)
from tlkit.engine.tensor import Tensor
from tlkit.engine.ops import operators

operators.install()  # Tensor's and Variable's operators record on the tape from here on

__all__ = [
    "Tensor", "abs", "absolute", "add", "amax", "amin", "arange", "argmax", "argmin", "argsort", "average_pool",
    "binary_crossentropy", "broadcast_to", "cast", "categorical_crossentropy", "ceil", "clip", "concatenate",
    "conv", "convert_to_numpy", "convert_to_tensor", "cos", "cumsum", "divide", "dot", "einsum", "equal", "erf",
    "exp", "expand_dims", "expm1", "eye", "floor", "floor_divide", "full", "full_like", "gelu", "getitem",
    "greater", "greater_equal", "isfinite", "isnan", "leaky_relu", "less", "less_equal", "log", "log1p",
    "log_softmax", "logical_and", "logical_not", "logical_or", "logsumexp", "matmul", "max", "max_pool",
    "maximum", "mean", "min", "minimum", "mod", "moments", "moveaxis", "multiply", "ndim", "negative", "norm",
    "normalize", "not_equal", "one_hot", "ones", "ones_like", "power", "reciprocal", "relu", "reshape", "round",
    "rsqrt", "shape", "sigmoid", "sign", "silu", "sin", "size", "softmax", "softplus",
    "sparse_categorical_crossentropy", "sort", "split", "sqrt", "square", "squeeze", "stack", "std",
    "stop_gradient", "subtract", "sum", "swapaxes", "swish", "take", "take_along_axis", "tanh", "tensordot",
    "top_k", "transpose", "true_divide", "unstack", "var", "vdot", "where", "zeros", "zeros_like",
]
