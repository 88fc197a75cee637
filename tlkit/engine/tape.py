"""Reverse-mode differentiation over layer calls and ops, on one tape.

While a ``GradientTape`` is active, each layer call that needs a gradient records
(layer, cache, inputs, outputs), and each ``tlkit.ops`` primitive on a tracked array (or a
trainable Variable) records its inputs and vector-Jacobian product. ``gradient`` walks both
kinds of record backwards together. Built-in layers stay single large records. Calls
that need no gradient (a frozen base fed by data) record nothing and keep no
activations, so a frozen prefix costs one inference pass. Arrays are tracked by
identity; the tape keeps them alive so ids stay unique.
"""
import threading

import numpy as np

from tlkit.engine.variable import Variable



class _TapeState(threading.local):
    tape = None  # the active GradientTape of this thread (a class default: reading it needs no fallback)


_local = _TapeState()


class _Record:
    __slots__ = ("layer", "cache", "inputs", "outputs", "needs_input_grad", "needs_weight_grad")

    def __init__(self, layer, cache, inputs, outputs, needs_input_grad, needs_weight_grad):
        self.layer = layer
        self.cache = cache
        self.inputs = inputs
        self.outputs = outputs
        self.needs_input_grad = needs_input_grad
        self.needs_weight_grad = needs_weight_grad

    def backprop(self, gys, pre_activation):
        gys = [g if g.flags.c_contiguous else np.ascontiguousarray(g) for g in gys]
        return self.layer._backward_call(self.cache, gys, self.needs_input_grad, self.needs_weight_grad,
                                         pre_activation)


class _OpRecord:
    """One primitive op: its inputs (for identity), their values, the output and the op's parameters."""
    __slots__ = ("op", "inputs", "values", "outputs", "params", "needs_input_grad", "residual")
    layer = None

    def __init__(self, op, inputs, values, output, params, needs, residual):
        self.op, self.inputs, self.values, self.outputs = op, inputs, values, (output,)
        self.params, self.needs_input_grad, self.residual = params, needs, residual

    def backprop(self, gys, pre_activation):
        y = self.outputs[0].view(np.ndarray)
        grads = self.op.vjp(gys[0], (y, self.residual) if self.op.residual else y, *self.values, **self.params)
        # Each gradient in its input's dtype (a float32 layer below must get float32).
        return [g if g is None or getattr(v, "dtype", None) in (None, g.dtype) else g.astype(v.dtype)
                for g, v in zip(grads, self.values)], ()


class GradientTape:
    """Records layer calls and ops for backward, with TensorFlow's API.

    >>> with GradientTape() as tape:
    ...     loss = loss_fn(y, model(x, training=True))
    >>> grads = tape.gradient(loss, model.trainable_weights)   # list in, list out; None if unconnected

    Trainable Variables are watched automatically; ``watch(x)`` adds an input array. A tape answers one
    ``gradient`` call unless ``persistent=True``.
    """

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self.records = []
        self._tracked = {}  # id(array) -> array, for arrays that depend on trainable weights
        self.persistent = bool(persistent)
        self._watch_variables = bool(watch_accessed_variables)
        self._used = False

    def __enter__(self):
        self._outer = getattr(_local, "tape", None)
        _local.tape = self
        return self

    def __exit__(self, *exc):
        _local.tape = self._outer
        return False

    def watch(self, array):
        """Track ``array`` (a model input, a Variable, or a list of them) so gradients reach it."""
        for a in (array if isinstance(array, (list, tuple)) else [array]):
            self._tracked[id(a)] = a

    def requires_grad(self, array):
        return id(array) in self._tracked or (
            self._watch_variables and type(array) is Variable and array.trainable)

    def record_op(self, op, inputs, values, output, params, needs, residual=None):
        self.records.append(_OpRecord(op, inputs, values, output, params, needs, residual))
        self._tracked[id(output)] = output

    def record(self, layer, cache, inputs, outputs, needs_input_grad, needs_weight_grad):
        self.records.append(_Record(layer, cache, inputs, outputs, needs_input_grad, needs_weight_grad))
        for out in outputs:
            self._tracked[id(out)] = out

    def record_of(self, array):
        """The layer record that produced ``array`` (None if no layer call did)."""
        for rec in reversed(self.records):
            if rec.layer is not None and any(o is array for o in rec.outputs):
                return rec
        return None

    def gradient(self, target, sources, output_gradients=None, unconnected_gradients="none"):
        """d target / d sources, TensorFlow's way: ``sources`` a Variable/array or a list of them (the
        answer has the same form), None for a source ``target`` does not depend on (or zeros with
        ``unconnected_gradients="zero"``). A list ``target`` means the sum of its entries."""
        if self._used and not self.persistent:
            raise RuntimeError("A non-persistent GradientTape can only be used to compute one set of gradients; "
                               "create it with GradientTape(persistent=True) to call gradient() again.")
        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(f"unconnected_gradients must be 'none' or 'zero', got {unconnected_gradients!r}.")
        self._used = True
        targets = list(target) if isinstance(target, (list, tuple)) else [target]
        if output_gradients is None:
            seeds = [np.ones(np.shape(t), _grad_dtype(t)) for t in targets]
        else:
            seeds = list(output_gradients) if isinstance(target, (list, tuple)) else [output_gradients]
            seeds = [None if g is None else np.asarray(g) for g in seeds]
        single = not isinstance(sources, (list, tuple))
        srcs = [sources] if single else list(sources)
        weight_grads, grads = self.backprop(targets, seeds, sources=srcs)
        out = []
        for s, g in zip(srcs, grads):
            if isinstance(s, Variable):
                g = weight_grads.get(id(s), (None, None))[1]
            if g is None and unconnected_gradients == "zero":
                g = np.zeros(np.shape(s), _grad_dtype(s))
            if g is not None:
                g = np.asarray(g).astype(_grad_dtype(s), copy=False).reshape(np.shape(s))
            out.append(g)
        if not self.persistent:
            self.records, self._tracked = [], {}
        return out[0] if single else out

    def backprop(self, outputs, output_grads, skip=None, sources=None):
        """Backpropagate ``output_grads`` from ``outputs``; returns {id(Variable): (Variable, grad)},
        and also the list of gradients for the watched ``sources`` when they are given.

        ``skip`` maps a record to a gradient that replaces that record's own backward
        input-side result (used to feed dL/dlogits straight into a softmax layer).
        """
        grads = {}
        for out, g in zip(outputs, output_grads):
            if g is not None and id(out) in self._tracked:
                _accumulate(grads, out, np.asarray(g))
        weight_grads = {}
        outer, _local.tape = getattr(_local, "tape", None), None  # backward computations record nothing
        try:
            for rec in reversed(self.records):
                gys = [grads.pop(id(o), None) for o in rec.outputs]
                if all(g is None for g in gys):
                    continue
                gys = [np.zeros(o.shape, o.dtype) if g is None else g for o, g in zip(rec.outputs, gys)]
                gxs, gws = rec.backprop(gys, skip is not None and rec in skip)
                for var, gw in gws:
                    _accumulate_weight(weight_grads, var, gw)
                for x, gx, need in zip(rec.inputs, gxs, rec.needs_input_grad):
                    if need and gx is not None:
                        if type(x) is Variable:
                            _accumulate_weight(weight_grads, x, gx)
                        else:
                            _accumulate(grads, x, gx)
        finally:
            _local.tape = outer
        if sources is not None:
            return weight_grads, [grads.get(id(s)) for s in sources]
        return weight_grads


def _accumulate(grads, array, g):
    key = id(array)
    if key in grads:
        grads[key] = grads[key] + g
    else:
        grads[key] = g


def _accumulate_weight(weight_grads, var, g):
    key = id(var)
    if key in weight_grads:
        weight_grads[key] = (var, weight_grads[key][1] + g)
    else:
        weight_grads[key] = (var, g)


def _grad_dtype(x):
    dtype = getattr(x, "dtype", None)
    return dtype if dtype is not None and np.dtype(dtype).kind in "fc" else np.float32


def active_tape():
    return _local.tape
