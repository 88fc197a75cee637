"""Tensor: the numpy array that ops return, so Python operators and numpy calls on it stay differentiable.

A plain ``ndarray`` answers ``y_true - y_pred`` or ``h * 2`` itself, and the tape never sees it. A
Tensor is an ``ndarray`` subclass (so every numpy consumer, numba kernel and ``isinstance`` check takes it
unchanged) whose operators, ufuncs, indexing and common numpy functions route to ``tlkit.ops``, which
record on the active GradientTape. Numpy functions without an op compute on the plain values (no gradient).
"""
import numpy as np


def plain(x):
    """The numpy value behind a Tensor or Variable (a view, no copy); anything else as is."""
    if isinstance(x, Tensor):
        return x.view(np.ndarray)
    value = getattr(x, "_tensor_value", None)
    return x if value is None else value()


def _plain_all(items):
    return [plain(x) for x in items]


def dispatch_ufunc(ufunc, method, inputs, kwargs):
    """numpy ufunc on Tensors/Variables: through the matching op when there is one, else on plain values."""
    from tlkit.engine.ops import dispatch

    op = dispatch.UFUNCS.get(ufunc) if method == "__call__" and not kwargs else None
    if op is not None:
        return op(*inputs)
    out = kwargs.get("out")
    if out is not None:
        kwargs = dict(kwargs, out=tuple(_plain_all(out)))
    result = getattr(ufunc, method)(*_plain_all(inputs), **kwargs)
    if out is not None:  # in place (``t += 1``): the caller keeps its own object
        return out[0] if len(out) == 1 else out
    return result


def dispatch_function(func, args, kwargs):
    """numpy function on Tensors: the matching op when the arguments allow one, else on plain values."""
    from tlkit.engine.ops import dispatch

    entry = dispatch.FUNCTIONS.get(func)
    if entry is not None and set(kwargs) <= entry[1]:
        return entry[0](*args, **kwargs)
    args = [(_plain_all(a) if isinstance(a, (list, tuple)) else plain(a)) for a in args]
    kwargs = {k: (_plain_all(v) if isinstance(v, (list, tuple)) else plain(v)) for k, v in kwargs.items()}
    return func(*args, **kwargs)


class Tensor(np.ndarray):
    """An op result. Behaves as its numpy array; ``numpy()`` gives a plain copy."""

    __array_priority__ = 100

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return dispatch_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return dispatch_function(func, args, kwargs)

    def __getitem__(self, key):
        from tlkit.engine.ops import shape_ops

        return shape_ops.getitem(self, key)

    def numpy(self):
        return np.array(self.view(np.ndarray))

    # ndarray methods that would bypass the ops
    def reshape(self, *shape, **kwargs):
        from tlkit.engine import ops

        return ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        from tlkit.engine import ops

        return ops.transpose(self, (axes[0] if len(axes) == 1 else axes) or None)

    @property
    def T(self):
        return self.transpose()

    def astype(self, dtype, *args, **kwargs):
        from tlkit.engine import ops

        return ops.cast(self, dtype)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        from tlkit.engine import ops

        return ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        from tlkit.engine import ops

        return ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, out=None, keepdims=False, **kwargs):
        from tlkit.engine import ops

        return ops.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, out=None, keepdims=False, **kwargs):
        from tlkit.engine import ops

        return ops.min(self, axis=axis, keepdims=keepdims)

    def flatten(self, order="C"):
        from tlkit.engine import ops

        return ops.reshape(self, (-1,))

    ravel = flatten

    def squeeze(self, axis=None):
        from tlkit.engine import ops

        return ops.squeeze(self, axis)

    def __repr__(self):
        return "tlkit.Tensor(" + repr(self.view(np.ndarray))[6:]

    def __reduce__(self):  # pickles (and deep-copies) as a plain array
        return self.view(np.ndarray).__reduce__()


def mask_of(x):
    """The Keras mask (batch, steps) an array carries (layers/masking.py), or None."""
    return getattr(x, "_keras_mask", None)


def attach_mask(x, mask):
    """``x`` (a Tensor view when it is a plain array) carrying ``mask``; x keeps its tape identity
    when it already is a Tensor."""
    if mask is None:
        return x
    if not isinstance(x, Tensor):
        x = x.view(Tensor)
    x._keras_mask = np.asarray(mask, bool)
    return x
