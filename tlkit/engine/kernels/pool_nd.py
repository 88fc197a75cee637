"""1-D and 3-D max and average pooling (channels-last), on pool.py's 2-D kernels.

    y, cache = pool_forward(x, "max", pool_size, strides, padding)   # x (N, L, C) or (N, D, H, W, C)
    dx = pool_backward(dy, cache)

A 1-D pooling is a 2-D one over an image of height 1. A 3-D pooling is separable: a window's max
(or mean over its real cells, TF's 'same' rule) over (depth, height, width) is the max (mean)
over depth of the per-slice maxima (means) over (height, width), because the count of real cells
in a window is the product of its per-axis counts. So it runs as a 2-D pooling of every depth
slice, then a 2-D pooling of (N, D, 1, OH * OW * C) along depth, and backward is the two
backwards in reverse.
"""
import numpy as np

from tlkit.engine.kernels import pool

__all__ = ["pool_forward", "pool_backward"]


def _pool2d(x, kind, size, strides, padding):
    """(y, one stage's cache) of one 2-D pooling."""
    if kind == "max":
        y, argmax = pool.max_pool2d_forward(x, size, strides, padding)
        return y, (kind, argmax, x.shape, size, strides, padding)
    return pool.avg_pool2d_forward(x, size, strides, padding), (kind, None, x.shape, size, strides, padding)


def _pool2d_backward(dy, stage):
    kind, argmax, shape, size, strides, padding = stage
    if kind == "max":
        return pool.max_pool2d_backward(dy, argmax, shape)
    return pool.avg_pool2d_backward(dy, shape, size, strides, padding)


def pool_forward(x, kind, pool_size, strides, padding):
    """(y, cache) of a 'max' or 'avg' pooling over x's spatial axes (1 or 3 of them)."""
    x = np.ascontiguousarray(x, np.float32)
    if kind not in ("max", "avg"):
        raise ValueError(f"pool_forward: kind must be 'max' or 'avg', got {kind!r}.")
    if x.ndim == 3:
        y, stage = _pool2d(x[:, None], kind, (1, pool_size[0]), (1, strides[0]), padding)
        return y[:, 0], (x.shape, [stage], None)
    if x.ndim != 5:
        raise ValueError(f"pool_forward: expected (batch, steps, channels) or (batch, depth, height, width, "
                         f"channels), got shape {x.shape}.")
    n, d, h, w, c = x.shape
    plane, first = _pool2d(x.reshape(n * d, h, w, c), kind, pool_size[1:], strides[1:], padding)
    oh, ow = plane.shape[1:3]
    y, second = _pool2d(plane.reshape(n, d, 1, oh * ow * c), kind, (pool_size[0], 1), (strides[0], 1), padding)
    return y.reshape(n, y.shape[1], oh, ow, c), (x.shape, [first, second], plane.shape)


def pool_backward(dy, cache):
    """dx of pool_forward, given dy = dL/dy."""
    x_shape, stages, plane_shape = cache
    g = np.ascontiguousarray(dy, np.float32)
    if len(stages) == 1:
        return _pool2d_backward(g[:, None], stages[0])[:, 0]
    first, second = stages
    g = _pool2d_backward(g.reshape(x_shape[0], g.shape[1], 1, -1), second)
    return _pool2d_backward(g.reshape(plane_shape), first).reshape(x_shape)
