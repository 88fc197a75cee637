"""Keras Variable behaviour that needs no ops, as a mixin: the numpy protocol, conversions, ``assign_add``.
Operators, ufuncs and indexing (which record on the tape) come from ``tlkit.engine.ops.operators``,
installed when the ops package loads."""
import numpy as np


class VariableArithmetic:
    """Mixed into Variable. Equality stays identity (Variables live in lists and dicts)."""

    __array_priority__ = 200
    __hash__ = object.__hash__

    def _tensor_value(self):
        return self.value

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

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
