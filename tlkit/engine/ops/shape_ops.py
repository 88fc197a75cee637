"""Shapes, joins, indexing, casts and array creation (Keras 3 ``keras.ops`` names and signatures)."""
import numpy as np

from tlkit.engine.ops.core import Tensor, primitive, shape_of, unbroadcast, value_of, wrap

_reshape = primitive("reshape", lambda x, shape: np.reshape(x, shape), lambda g, y, x, shape: (g.reshape(np.shape(x)),))


def reshape(x, newshape):
    return _reshape(x, shape=tuple(int(s) for s in np.atleast_1d(newshape)) if not np.isscalar(newshape)
                    else (int(newshape),))


def _transpose_vjp(g, y, x, axes):
    return (g.transpose(np.argsort(axes)) if axes is not None else g.transpose(),)


_transpose = primitive("transpose", lambda x, axes: np.transpose(x, axes), _transpose_vjp)


def transpose(x, axes=None):
    return _transpose(x, axes=None if axes is None else tuple(int(a) for a in axes))


def expand_dims(x, axis):
    return reshape(x, np.expand_dims(np.empty(shape_of(value_of(x)), np.int8), axis).shape)


def squeeze(x, axis=None):
    axis = tuple(axis) if isinstance(axis, list) else axis
    return reshape(x, np.squeeze(np.empty(shape_of(value_of(x)), np.int8), axis).shape)


def moveaxis(x, source, destination):
    order = np.moveaxis(np.arange(np.ndim(value_of(x))), source, destination)
    return transpose(x, order)


def swapaxes(x, axis1, axis2):
    order = list(range(np.ndim(value_of(x))))
    order[axis1], order[axis2] = order[axis2], order[axis1]
    return transpose(x, order)


_broadcast_to = primitive("broadcast_to", lambda x, shape: np.broadcast_to(x, shape).copy(),
                          lambda g, y, x, shape: (unbroadcast(g, shape_of(x)),))


def broadcast_to(x, shape):
    return _broadcast_to(x, shape=tuple(shape))


def _concatenate_vjp(g, y, *xs, axis):
    bounds = np.cumsum([np.shape(x)[axis] for x in xs])[:-1]
    return tuple(np.split(g, bounds, axis=axis))


_concatenate = primitive("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis), _concatenate_vjp)


def concatenate(xs, axis=0):
    return _concatenate(*xs, axis=int(axis))


def stack(x, axis=0):
    return concatenate([expand_dims(t, axis) for t in x], axis=axis)


def _split_bounds(size, indices_or_sections):
    if isinstance(indices_or_sections, (int, np.integer)):
        if size % indices_or_sections:
            raise ValueError(f"split: an axis of size {size} does not divide into {indices_or_sections} equal parts; "
                             "pass a list of split indices instead.")
        step = size // indices_or_sections
        return [(i * step, (i + 1) * step) for i in range(indices_or_sections)]
    edges = [0] + [int(i) for i in indices_or_sections] + [size]
    return list(zip(edges[:-1], edges[1:]))


def split(x, indices_or_sections, axis=0):
    ndim = np.ndim(value_of(x))
    axis = axis % ndim
    pieces = []
    for lo, hi in _split_bounds(shape_of(value_of(x))[axis], indices_or_sections):
        key = (slice(None),) * axis + (slice(lo, hi),)
        pieces.append(getitem(x, key))
    return pieces


def unstack(x, num=None, axis=0):
    n = shape_of(value_of(x))[axis]
    return [squeeze(p, axis) for p in split(x, n, axis)]


def _plain_key(key):
    if isinstance(key, tuple):
        return tuple(_plain_key(k) for k in key)
    if isinstance(key, (slice, int, np.integer, type(None), type(Ellipsis))):
        return key
    return np.asarray(value_of(key))


def _is_basic(key):
    return all(isinstance(k, (slice, int, np.integer, type(None), type(Ellipsis)))
               for k in (key if isinstance(key, tuple) else (key,)))


def _getitem_vjp(g, y, x, key):
    gx = np.zeros(np.shape(x), g.dtype)
    if _is_basic(key):
        gx[key] = g
    else:
        np.add.at(gx, key, g)  # repeated indices accumulate
    return (gx,)


_getitem = primitive("getitem", lambda x, key: np.asarray(x[key]), _getitem_vjp)


def getitem(x, key):
    """``x[key]`` for slices, integers, None, Ellipsis, boolean masks and integer arrays."""
    return _getitem(x, key=_plain_key(key))


def _take_forward(x, indices, axis):
    return np.take(x, indices, axis=axis)


def _take_vjp(g, y, x, indices, axis):
    gx = np.zeros(np.shape(x), g.dtype)
    idx = np.asarray(indices)
    if axis is None:
        np.add.at(gx.reshape(-1), idx.reshape(-1), g.reshape(-1))
        return gx, None
    axis = axis % gx.ndim
    k = idx.ndim
    np.add.at(np.moveaxis(gx, axis, 0), idx, np.moveaxis(g, list(range(axis, axis + k)), list(range(k))))
    return gx, None


_take = primitive("take", _take_forward, _take_vjp)


def take(x, indices, axis=None):
    return _take(x, np.asarray(value_of(indices)).astype(np.intp), axis=axis)


def _along_index(indices, axis):
    grids = list(np.ogrid[tuple(slice(s) for s in indices.shape)])
    grids[axis] = indices
    return tuple(grids)


def _take_along_vjp(g, y, x, indices, axis):
    gx = np.zeros(np.shape(x), g.dtype)
    np.add.at(gx, _along_index(np.asarray(indices), axis % gx.ndim), g)
    return gx, None


_take_along_axis = primitive("take_along_axis", lambda x, indices, axis: np.take_along_axis(x, indices, axis=axis),
                             _take_along_vjp)


def take_along_axis(x, indices, axis=None):
    if axis is None:
        return _take_along_axis(reshape(x, (-1,)), np.asarray(value_of(indices)).reshape(-1), axis=0)
    return _take_along_axis(x, np.asarray(value_of(indices)).astype(np.intp), axis=int(axis))


def sort(x, axis=-1):
    idx = np.argsort(value_of(x), axis=axis, kind="stable")
    return take_along_axis(x, idx, axis=axis)


def top_k(x, k, sorted=True):  # noqa: A002 (Keras's name)
    """(values, indices) of the k largest entries along the last axis, largest first."""
    v = value_of(x)
    idx = np.argsort(-v, axis=-1, kind="stable")[..., :k]
    return take_along_axis(x, idx, axis=-1), wrap(idx.astype(np.int32))


def _cast_vjp(g, y, x, dtype):
    return (g.astype(np.asarray(x).dtype) if np.asarray(x).dtype.kind in "fc" else None,)


_cast = primitive("cast", lambda x, dtype: np.asarray(x).astype(dtype), _cast_vjp)


def cast(x, dtype):
    return _cast(x, dtype=_dtype(dtype))


def _dtype(dtype):
    return np.dtype("float32" if dtype is None else getattr(dtype, "name", dtype) if not isinstance(dtype, str)
                    else dtype)


_identity = primitive("identity", lambda x: np.asarray(x), lambda g, y, x: (g,))


def convert_to_tensor(x, dtype=None, sparse=None):
    """A Tensor of ``x`` that stays differentiable with respect to it (a watched array, a Variable)."""
    t = x if isinstance(x, Tensor) else _identity(x)
    return t if dtype is None or t.dtype == _dtype(dtype) else cast(t, dtype)


def convert_to_numpy(x):
    return np.array(value_of(x))


def stop_gradient(variable):
    return wrap(np.array(value_of(variable)))


def shape(x):
    """The static shape, a tuple (as Keras on eager backends)."""
    return tuple(np.shape(value_of(x)))


def ndim(x):
    return np.ndim(value_of(x))


def size(x):
    return int(np.size(value_of(x)))


def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    x = np.asarray(value_of(x)).astype(np.int64)
    out = (x[..., None] == np.arange(num_classes)).astype(_dtype(dtype))
    return wrap(np.moveaxis(out, -1, axis) if axis != -1 else out)


def zeros(shape, dtype=None):
    return wrap(np.zeros(shape, _dtype(dtype)))


def ones(shape, dtype=None):
    return wrap(np.ones(shape, _dtype(dtype)))


def full(shape, fill_value, dtype=None):
    return wrap(np.full(shape, fill_value, _dtype(dtype)))


def full_like(x, fill_value, dtype=None):
    v = np.asarray(value_of(x))
    return wrap(np.full(v.shape, fill_value, v.dtype if dtype is None else _dtype(dtype)))


def zeros_like(x, dtype=None):
    return full_like(x, 0, dtype)


def ones_like(x, dtype=None):
    return full_like(x, 1, dtype)


def eye(N, M=None, k=0, dtype=None):  # noqa: N803 (Keras's names)
    return wrap(np.eye(N, M, k, dtype=_dtype(dtype)))


def arange(start, stop=None, step=1, dtype=None):
    out = np.arange(start, stop, step) if stop is not None else np.arange(start)
    return wrap(out if dtype is None else out.astype(_dtype(dtype)))
