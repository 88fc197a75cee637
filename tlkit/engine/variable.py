"""A weight of a layer: a named float32 array that optimizers update in place."""
import numpy as np


class Variable:
    """A named, mutable array owned by a layer.

    Optimizers and ``set_weights`` update ``value`` in place (``assign``), so
    every holder of the Variable sees the new numbers.

    >>> v = Variable(np.zeros((2, 3)), name="dense/kernel")
    >>> v.assign(np.ones((2, 3))); float(v.value.sum())
    6.0
    """

    def __init__(self, value, name="variable", trainable=True, regularizer=None):
        self.value = np.ascontiguousarray(value, dtype=np.float32)
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
        value = np.asarray(value)
        if value.shape != self.value.shape:
            raise ValueError(
                f"Cannot assign a value of shape {value.shape} to variable "
                f"'{self.name}' of shape {self.value.shape}."
            )
        np.copyto(self.value, value, casting="unsafe")
        self.version += 1

    def __repr__(self):
        return f"<Variable '{self.name}' shape={self.shape} trainable={self.trainable}>"
