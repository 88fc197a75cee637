"""Python operators, numpy ufuncs/functions, indexing and array methods of Tensor and Variable, routed
to the ops so they record on the tape. ``install()`` puts them on both classes; the ops package calls it
when it loads, so tensor.py and variable.py need not import the ops (which import them)."""
import numpy as np

from tlkit.engine.ops import dispatch, linalg, math_ops as m, shape_ops as s
from tlkit.engine.tape import active_tape
from tlkit.engine.tensor import Tensor, plain
from tlkit.engine.variable import Variable


def _plain_all(items):
    return [plain(x) for x in items]


def dispatch_ufunc(ufunc, method, inputs, kwargs):
    """numpy ufunc on Tensors/Variables: through the matching op when there is one, else on plain values."""
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
    entry = dispatch.FUNCTIONS.get(func)
    if entry is not None and set(kwargs) <= entry[1]:
        return entry[0](*args, **kwargs)
    args = [(_plain_all(a) if isinstance(a, (list, tuple)) else plain(a)) for a in args]
    kwargs = {k: (_plain_all(v) if isinstance(v, (list, tuple)) else plain(v)) for k, v in kwargs.items()}
    return func(*args, **kwargs)


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    return dispatch_ufunc(ufunc, method, inputs, kwargs)


def _array_function(self, func, types, args, kwargs):
    return dispatch_function(func, args, kwargs)


def _getitem(self, key):
    return s.getitem(self, key)


# ndarray methods that would bypass the ops
def _reshape(self, *shape, **kwargs):
    return s.reshape(self, shape[0] if len(shape) == 1 else shape)


def _transpose(self, *axes):
    return s.transpose(self, (axes[0] if len(axes) == 1 else axes) or None)


def _astype(self, dtype, *args, **kwargs):
    return s.cast(self, dtype)


def _reduction(op):
    def method(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        return op(self, axis=axis, keepdims=keepdims)
    method.__name__ = op.__name__
    return method


def _max(self, axis=None, out=None, keepdims=False, **kwargs):
    return m.max(self, axis=axis, keepdims=keepdims)


def _min(self, axis=None, out=None, keepdims=False, **kwargs):
    return m.min(self, axis=axis, keepdims=keepdims)


def _flatten(self, order="C"):
    return s.reshape(self, (-1,))


def _squeeze(self, axis=None):
    return s.squeeze(self, axis)


def _in_place(op, ndarray_method):
    """``t += x``: in place, as numpy, unless the tape tracks an operand; then a new recorded Tensor (as
    TensorFlow's immutable tensors give), since a change in place would hide from the gradient."""
    def method(self, other):
        tape = active_tape()
        if tape is not None and (tape.requires_grad(self) or tape.requires_grad(other)):
            return op(self, other)
        return ndarray_method(self, other)
    return method


TENSOR_METHODS = {
    "__array_ufunc__": _array_ufunc, "__array_function__": _array_function, "__getitem__": _getitem,
    "reshape": _reshape, "transpose": _transpose, "T": property(_transpose), "astype": _astype,
    "sum": _reduction(m.sum), "mean": _reduction(m.mean), "max": _max, "min": _min,
    "flatten": _flatten, "ravel": _flatten, "squeeze": _squeeze,
    "__iadd__": _in_place(m.add, np.ndarray.__iadd__), "__isub__": _in_place(m.subtract, np.ndarray.__isub__),
    "__imul__": _in_place(m.multiply, np.ndarray.__imul__),
    "__itruediv__": _in_place(m.divide, np.ndarray.__itruediv__),
}


def _binary(op, reflected=False):
    def method(self, other):
        return op(other, self) if reflected else op(self, other)
    return method


def _unary(op):
    # A function, not the op itself: a Primitive is no descriptor, so Python would call it without self.
    def method(self):
        return op(self)
    return method



VARIABLE_METHODS = {
    "__array_ufunc__": _array_ufunc, "__getitem__": _getitem,
    "__neg__": _unary(m.negative), "__pos__": _unary(s.convert_to_tensor), "__abs__": _unary(m.abs),
    "__lt__": _binary(m.less), "__le__": _binary(m.less_equal),
    "__gt__": _binary(m.greater), "__ge__": _binary(m.greater_equal),
}
for _name, _op in (("add", m.add), ("sub", m.subtract), ("mul", m.multiply), ("truediv", m.divide),
                   ("pow", m.power), ("matmul", linalg.matmul)):
    VARIABLE_METHODS[f"__{_name}__"] = _binary(_op)
    VARIABLE_METHODS[f"__r{_name}__"] = _binary(_op, reflected=True)

def install():
    for name, method in TENSOR_METHODS.items():
        setattr(Tensor, name, method)
    for name, method in VARIABLE_METHODS.items():
        setattr(Variable, name, method)
