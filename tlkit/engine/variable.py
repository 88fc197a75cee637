"""A weight of a layer: a named array (float32 unless told) that optimizers update in place."""
import numpy as np

from tlkit.engine.variable_arithmetic import VariableArithmetic


class Variable(VariableArithmetic):
    """A named, mutable array owned by a layer.

    Optimizers and ``set_weights`` update ``value`` in place (``assign``), so
    every holder of the Variable sees the new numbers. Maths on it (``v * 2``, ``ops.matmul(x, v)``)
    records on the GradientTape, so its gradient reaches it.

    >>> v = Variable(np.zeros((2, 3)), name="dense/kernel")
    >>> v.assign(np.ones((2, 3))); float(v.value.sum())
    6.0
    """

    def __init__(self, value=None, name="variable", trainable=True, regularizer=None, dtype=None, shape=None,
                 initializer=None):
        value = initializer if value is None else value
        if isinstance(value, str) or callable(value):  # Keras: Variable(initializer="zeros", shape=...)
            from tlkit.engine import initializers

            value = initializers.get(value)(tuple(shape or ()))
        self.value = np.asarray(value, dtype=np.dtype(dtype or np.float32), order="C")  # 0-d stays 0-d
        self.name = name
        self._trainable = bool(trainable)
        self.regularizer = regularizer
        self.version = 0  # bumped by assign(): lets layers cache values derived from the weight

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, flag):
        self._trainable = bool(flag)

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def size(self):
        return self.value.size

    def numpy(self):
        return self.value.copy()

    def assign(self, value):
        value = np.asarray(value.value if isinstance(value, Variable) else value)
        if value.shape != self.value.shape:
            raise ValueError(
                f"Cannot assign a value of shape {value.shape} to variable "
                f"'{self.name}' of shape {self.value.shape}."
            )
        np.copyto(self.value, value, casting="unsafe")
        self.version += 1
        return self

    def __repr__(self):
        return f"<Variable '{self.name}' shape={self.shape} trainable={self.trainable}>"
