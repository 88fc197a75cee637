"""Reverse-mode differentiation at the granularity of layer calls.

While a ``GradientTape`` is active, each layer call that needs a gradient records
(layer, cache, inputs, outputs). ``gradient`` walks the records backwards. Calls
that need no gradient (a frozen base fed by data) record nothing and keep no
activations, so a frozen prefix costs one inference pass. Arrays are tracked by
identity; the tape keeps them alive so ids stay unique.
"""
import threading

import numpy as np

_local = threading.local()


class _Record:
    __slots__ = ("layer", "cache", "inputs", "outputs", "needs_input_grad", "needs_weight_grad")

    def __init__(self, layer, cache, inputs, outputs, needs_input_grad, needs_weight_grad):
        self.layer = layer
        self.cache = cache
        self.inputs = inputs
        self.outputs = outputs
        self.needs_input_grad = needs_input_grad
        self.needs_weight_grad = needs_weight_grad


class GradientTape:
    """Records layer calls for backward.

    >>> with GradientTape() as tape:
    ...     y = model(x, training=True)
    >>> grads = tape.gradient(y, dy)    # {Variable: gradient}
    """

    def __init__(self):
        self.records = []
        self._tracked = {}  # id(array) -> array, for arrays that depend on trainable weights

    def __enter__(self):
        self._outer = getattr(_local, "tape", None)
        _local.tape = self
        return self

    def __exit__(self, *exc):
        _local.tape = self._outer
        return False

    def watch(self, array):
        """Track ``array`` (e.g. a model input) so ``gradient(..., sources=[array])`` returns dL/darray."""
        self._tracked[id(array)] = array

    def requires_grad(self, array):
        return id(array) in self._tracked

    def record(self, layer, cache, inputs, outputs, needs_input_grad, needs_weight_grad):
        self.records.append(_Record(layer, cache, inputs, outputs, needs_input_grad, needs_weight_grad))
        for out in outputs:
            self._tracked[id(out)] = out

    def record_of(self, array):
        """The record that produced ``array`` (None if it was not recorded)."""
        for rec in reversed(self.records):
            if any(o is array for o in rec.outputs):
                return rec
        return None

    def gradient(self, outputs, output_grads, skip=None, sources=None):
        """Backpropagate ``output_grads`` from ``outputs``; returns {id(Variable): (Variable, grad)},
        and also the list of gradients for the watched ``sources`` when they are given.

        ``skip`` maps a record to a gradient that replaces that record's own backward
        input-side result (used to feed dL/dlogits straight into a softmax layer).
        """
        grads = {}
        for out, g in zip(outputs, output_grads):
            if g is not None and id(out) in self._tracked:
                _accumulate(grads, out, g)
        weight_grads = {}
        for rec in reversed(self.records):
            gys = [grads.pop(id(o), None) for o in rec.outputs]
            if all(g is None for g in gys):
                continue
            gys = [np.zeros_like(o) if g is None else g for o, g in zip(rec.outputs, gys)]
            pre_activation = skip is not None and rec in skip
            gxs, gws = rec.layer._backward_call(
                rec.cache, gys, rec.needs_input_grad, rec.needs_weight_grad, pre_activation
            )
            for var, gw in gws:
                key = id(var)
                if key in weight_grads:
                    weight_grads[key] = (var, weight_grads[key][1] + gw)
                else:
                    weight_grads[key] = (var, gw)
            for x, gx, need in zip(rec.inputs, gxs, rec.needs_input_grad):
                if need and gx is not None:
                    _accumulate(grads, x, gx)
        if sources is not None:
            return weight_grads, [grads.get(id(s)) for s in sources]
        return weight_grads


def _accumulate(grads, array, g):
    key = id(array)
    if key in grads:
        grads[key] = grads[key] + g
    else:
        grads[key] = g


def active_tape():
    return getattr(_local, "tape", None)
