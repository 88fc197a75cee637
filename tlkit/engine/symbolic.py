"""Symbolic tensors: the placeholders the Functional API wires layers together with."""
import itertools

import numpy as np

_uid = itertools.count()


class KerasTensor:
    """A placeholder with a shape (batch dimension None) produced by a layer call.

    ``x = tlkit.Input((32, 32, 3)); y = Conv2D(8, 3)(x)`` gives ``y.shape == (None, 30, 30, 8)``.
    """

    def __init__(self, shape, dtype="float32", name=None, node=None, index=0):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.name = name or f"keras_tensor_{next(_uid)}"
        self.node = node  # the Node that produced it
        self.index = index  # which of that node's outputs
        self.consumers = []  # the Nodes that read it (preprocessing layers fuse along single-reader chains)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, name={self.name}>"

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "A symbolic tensor (from tlkit.Input or a layer called on one) can't be turned into "
            "numpy: build a tlkit.Model(inputs, outputs) and call it on data."
        )


class Node:
    """One call of a layer on symbolic tensors."""

    def __init__(self, layer, inputs, outputs, kwargs=None):
        self.layer = layer
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.kwargs = kwargs or {}
        for i, t in enumerate(self.outputs):
            t.node, t.index = self, i
        for t in self.inputs:
            if hasattr(t, "consumers"):
                t.consumers.append(self)


def is_symbolic(x):
    if isinstance(x, KerasTensor):
        return True
    if isinstance(x, (list, tuple)):
        return any(isinstance(t, KerasTensor) for t in x)
    return False


def flatten(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def as_float_array(x):
    arr = np.asarray(x)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return arr
