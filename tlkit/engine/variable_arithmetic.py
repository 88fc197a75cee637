"""Keras Variable behaviour as a mixin: operators, numpy protocol and indexing through tlkit.ops, so
maths on a Variable records on the tape and its gradient reaches the Variable itself."""
import numpy as np


def _ops():
    from tlkit.engine import ops

    return ops


def _binary(name, reflected=False):
    def method(self, other):
        op = getattr(_ops(), name)
        return op(other, self) if reflected else op(self, other)
    method.__name__ = f"__{'r' if reflected else ''}{name}__"
    return method


class VariableArithmetic:
    """Mixed into Variable. Equality stays identity (Variables live in lists and dicts)."""

    __array_priority__ = 200

    def _tensor_value(self):
        return self.value

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from tlkit.engine.tensor import dispatch_ufunc

        return dispatch_ufunc(ufunc, method, inputs, kwargs)

    __add__, __radd__ = _binary("add"), _binary("add", True)
    __sub__, __rsub__ = _binary("subtract"), _binary("subtract", True)
    __mul__, __rmul__ = _binary("multiply"), _binary("multiply", True)
    __truediv__, __rtruediv__ = _binary("divide"), _binary("divide", True)
    __pow__, __rpow__ = _binary("power"), _binary("power", True)
    __matmul__, __rmatmul__ = _binary("matmul"), _binary("matmul", True)
    __lt__, __le__ = _binary("less"), _binary("less_equal")
    __gt__, __ge__ = _binary("greater"), _binary("greater_equal")
    __hash__ = object.__hash__

    def __neg__(self):
        return _ops().negative(self)

    def __pos__(self):
        return _ops().convert_to_tensor(self)

    def __abs__(self):
        return _ops().abs(self)

    def __getitem__(self, key):
        return _ops().getitem(self, key)

    def __len__(self):
        return len(self.value)

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)

    def __bool__(self):
        return bool(self.value)

    @property
    def ndim(self):
        return self.value.ndim

    def assign_add(self, value):
        return self.assign(self.value + np.asarray(value))

    def assign_sub(self, value):
        return self.assign(self.value - np.asarray(value))
