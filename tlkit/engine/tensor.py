"""Tensor: the numpy array that ops return, so Python operators and numpy calls on it stay differentiable.

A plain ``ndarray`` answers ``y_true - y_pred`` or ``h * 2`` itself, and the tape never sees it. A
Tensor is an ``ndarray`` subclass (so every numpy consumer, numba kernel and ``isinstance`` check takes it
unchanged) whose operators, ufuncs, indexing and common numpy functions route to ``tlkit.ops``, which
record on the active GradientTape. Numpy functions without an op compute on the plain values (no gradient).

This module knows nothing of the ops: ``tlkit.engine.ops.operators`` installs those methods on Tensor
(and on Variable) when the ops package loads, which ``import tlkit.engine`` always does.
"""
import numpy as np


def plain(x):
    """The numpy value behind a Tensor or Variable (a view, no copy); anything else as is."""
    if isinstance(x, Tensor):
        return x.view(np.ndarray)
    value = getattr(x, "_tensor_value", None)
    return x if value is None else value()


class Tensor(np.ndarray):
    """An op result. Behaves as its numpy array; ``numpy()`` gives a plain copy."""

    __array_priority__ = 100

    def numpy(self):
        return np.array(self.view(np.ndarray))

    def __repr__(self):
        return "tlkit.Tensor(" + repr(self.view(np.ndarray))[6:]

    def __reduce__(self):  # pickles (and deep-copies) as a plain array
        return self.view(np.ndarray).__reduce__()


def mask_of(x):
    """The Keras mask (batch, steps) an array carries (layers/masking.py), or None."""
    return None if type(x) is np.ndarray else getattr(x, "_keras_mask", None)  # a plain array holds none


def pass_mask(inputs, out):
    """Keras's default ``compute_mask`` for a layer that supports masking: ``out`` carrying the mask of
    the first input, when the output keeps the masked (batch, steps) axes; ``out`` as it is otherwise."""
    first = inputs[0] if isinstance(inputs, (list, tuple)) and inputs else inputs
    mask = mask_of(first)
    if mask is None or not isinstance(out, np.ndarray) or mask_of(out) is not None \
            or out.shape[:mask.ndim] != mask.shape:
        return out
    return attach_mask(out, mask)


def attach_mask(x, mask):
    """``x`` (a Tensor view when it is a plain array) carrying ``mask``; x keeps its tape identity
    when it already is a Tensor."""
    if mask is None:
        return x
    if not isinstance(x, Tensor):
        x = x.view(Tensor)
    x._keras_mask = np.asarray(mask, bool)
    return x
