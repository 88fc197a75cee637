"""The Layer base class: weights, naming, symbolic and concrete calls, and the backward hook.

A layer subclass implements (Keras style)::

    build(input_shape)                 # create weights with add_weight
    call(inputs, training=False)       # the computation on numpy arrays
    compute_output_shape(input_shape)  # shapes for the Functional API

and, to be trainable through, ``forward`` (returns outputs and whatever backward needs)
and ``backward(cache, dy, need_input_grad, need_weight_grad)`` returning
``(dx, [(variable, gradient), ...])``. A layer that only composes other layers (like a
subclassed model) needs no backward: the layers it calls record themselves on the tape.
"""
import collections

import numpy as np

from tlkit.engine import activations as _activations
from tlkit.engine import initializers as _initializers
from tlkit.engine import layer_calls
from tlkit.engine import regularizers as _regularizers
from tlkit.engine.symbolic import KerasTensor, Node, flatten, is_symbolic
from tlkit.engine.tape import active_tape
from tlkit.engine.tensor import pass_mask
from tlkit.engine.variable import Variable
from tlkit.utils.text import format_shape, snake_case

_name_counts = collections.defaultdict(int)
_call_context = layer_calls._state  # the training flag and skip_init, per thread


def unique_name(base):
    """Keras-style unique names: 'dense', 'dense_1', 'dense_2', ..."""
    n = _name_counts[base]
    _name_counts[base] += 1
    return base if n == 0 else f"{base}_{n}"


def reset_names():
    """Start every layer name over ('dense', 'dense_1'...), as Keras's clear_session does."""
    _name_counts.clear()


class skip_initializers:
    """Build layers with zero weights instead of drawing initial values (they are about to be loaded):
    saves the time of initializing e.g. VGG16's 138M weights, and draws nothing from the RNG.

        with skip_initializers():
            model = deserialize_layer(config)
    """

    def __enter__(self):
        self._outer = _call_context.skip_init
        _call_context.skip_init = True

    def __exit__(self, *exc):
        _call_context.skip_init = self._outer
        return False


def _skipping_initializers():
    return _call_context.skip_init


class Layer:
    """Base class of every tlkit layer (and of Model)."""

    # Subclasses that accept dL/d(pre-activation) in backward (softmax/sigmoid + cross-entropy fusion).
    supports_logit_fusion = False
    supports_masking = False  # Keras's flag: the output carries the input's mask (tensor.pass_mask)

    # What inference may ask of this layer's ``call`` (planned in inference_plan.py). A subclass
    # that overrides ``call`` declares these again: they hold for the class that defines ``call``.
    accepts_output_buffer = False  # call(..., out=array) writes the output into ``array``
    writes_channel_slice = False  # ... and ``array`` may be a channel slice of a wider array

    def concatenates_channels(self, output_shape):
        """Whether inference may write this layer's inputs straight into channel slices of its output."""
        return False

    def fuses_with(self, input_shape, consumer):
        """The keyword with which ``call`` also computes ``consumer`` (its only reader) in one pass, or None."""
        return None

    def __init__(self, trainable=True, name=None, dtype=None, input_shape=None, batch_input_shape=None,
                 input_dim=None, **kwargs):
        if kwargs:
            raise TypeError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}")
        object.__setattr__(self, "_sublayers", [])
        self._own_weights = []
        self.name = name or unique_name(snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.dtype = dtype or "float32"
        self.built = False
        self._input_spec = None  # (ndim, last_dim) learned at build
        self._inbound_nodes = []
        # Keras 2 style `input_shape=` on the first layer of a Sequential.
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        if batch_input_shape is not None:
            self._batch_input_shape = tuple(batch_input_shape)
        elif input_shape is not None:
            self._batch_input_shape = (None,) + tuple(input_shape)
        else:
            self._batch_input_shape = None

    # ----- sub-layer tracking (attributes that hold layers) -----
    def __setattr__(self, name, value):
        if not name.startswith("_") and hasattr(self, "_sublayers"):
            for item in (value if isinstance(value, (list, tuple)) else [value]):
                if isinstance(item, Layer) and item is not self and item not in self._sublayers:
                    self._sublayers.append(item)
        object.__setattr__(self, name, value)

    # ----- weights -----
    def _set_kernel_arguments(self, activation, use_bias, kernel_initializer, bias_initializer,
                              kernel_regularizer, bias_regularizer):
        """Resolve the arguments every kernel+bias layer (Dense, Conv2D) takes, as Keras does."""
        self.activation, function = _activations.resolve(activation)
        layer_calls.use_activation_function(self, function)
        self.use_bias = use_bias
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)

    def add_weight(self, shape=(), initializer="glorot_uniform", name=None, trainable=True, regularizer=None,
                   dtype=None, **kwargs):
        """A new Variable of this layer (Keras's arguments; constraint/aggregation/autocast left at defaults)."""
        unsupported = {k: v for k, v in kwargs.items() if k not in ("autocast", "aggregation", "synchronization")
                       and v is not None}
        if unsupported:
            raise ValueError(f"add_weight: tlkit does not support {sorted(unsupported)}; remove them.")
        init = _initializers.get("zeros" if initializer is None else initializer)
        shape = tuple(int(s) for s in (shape or ()))
        value = np.zeros(shape, np.float32) if _skipping_initializers() else init(shape)
        var = Variable(value, name=f"{self.name}/{name or 'weight'}", trainable=trainable,
                       regularizer=_regularizers.get(regularizer), dtype=dtype)
        self._own_weights.append(var)
        return var

    def add_variable(self, shape, initializer, dtype=None, trainable=True, name=None, **kwargs):
        return self.add_weight(shape, initializer, name=name, trainable=trainable, dtype=dtype, **kwargs)

    def add_loss(self, loss):
        """Add a loss (e.g. an activity penalty computed with ops in call()); training adds it to the loss."""
        layer_calls.add_loss(self, loss)

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, flag):
        # As in Keras: (un)freezing a layer (un)freezes everything inside it.
        self._trainable = bool(flag)
        for sub in self._sublayers:
            sub.trainable = flag

    def _all_layers(self):
        """Every layer below this one, depth first, each once."""
        seen, out = set(), []
        for sub in self._sublayers:
            for layer in [sub] + sub._all_layers():
                if id(layer) not in seen:
                    seen.add(id(layer))
                    out.append(layer)
        return out

    @property
    def weights(self):
        out, seen = [], set()
        for layer in [self] + self._all_layers():
            for v in layer._own_weights:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    @property
    def trainable_weights(self):
        out, seen = [], set()
        if not self.trainable:
            return out
        for v in self._own_weights:
            if v.trainable:
                seen.add(id(v))
                out.append(v)
        for sub in self._sublayers:
            for v in sub.trainable_weights:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    @property
    def non_trainable_weights(self):
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]

    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights
    variables = weights

    def get_weights(self):
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights):
        params = self.weights
        weights = list(weights)
        if len(weights) != len(params):
            raise ValueError(
                f"Layer '{self.name}' expects {len(params)} weight arrays, but set_weights got {len(weights)}."
            )
        for var, w in zip(params, weights):
            w = np.asarray(w)
            if w.shape != var.shape:
                raise ValueError(
                    f"Layer '{self.name}' weight '{var.name}' has shape {var.shape}, "
                    f"but set_weights provided shape {w.shape}."
                )
        for var, w in zip(params, weights):
            var.assign(w)

    def count_params(self):
        return int(sum(v.size for v in self.weights))

    @property
    def losses(self):
        """Regularization penalties of the trainable weights (floats), then add_loss's of the last call."""
        return [v.regularizer(v.value) for v in self.trainable_weights if v.regularizer is not None] + \
            layer_calls.added_losses(self)

    # ----- building and shapes -----
    def build(self, input_shape):
        self.built = True

    # A layer whose output has its input's shape (activations, dropout, normalization) says so here:
    # its symbolic call then costs nothing.
    preserves_shape = False

    def compute_output_shape(self, input_shape):
        """Keras's default: the shape ``call`` returns. A layer that does not override this is run once
        on zeros of ``input_shape`` (unknown sizes taken as 1) and its output's shape read off, with
        the batch dimension unknown again, as Keras traces ``call`` symbolically."""
        if self.preserves_shape:
            return input_shape
        return layer_calls.traced_output_shape(self, input_shape)

    def _maybe_build(self, input_shapes):
        shape = input_shapes[0] if len(input_shapes) == 1 else input_shapes
        if not self.built:
            self.build(shape)
            self.built = True
            if len(input_shapes) == 1 and len(input_shapes[0]) > 1:
                self._input_spec = (len(input_shapes[0]), input_shapes[0][-1])
        self._check_input_shapes(input_shapes)

    def _check_input_shapes(self, input_shapes):
        if self._input_spec is None or len(input_shapes) != 1:
            return
        ndim, last = self._input_spec
        shape = tuple(input_shapes[0])
        if len(shape) != ndim:
            raise ValueError(
                f"Input 0 of layer '{self.name}' ({type(self).__name__}) is incompatible with the layer: "
                f"expected ndim={ndim}, found ndim={len(shape)}. Full shape received: {format_shape(shape)}"
            )
        if last is not None and shape[-1] is not None and shape[-1] != last:
            raise ValueError(
                f"Input 0 of layer '{self.name}' ({type(self).__name__}) is incompatible with the layer: "
                f"expected axis -1 of input shape to have value {last}, but received input with shape {format_shape(shape)}"
            )

    # ----- calling -----
    def __call__(self, inputs, *more_inputs, training=None, **kwargs):
        if more_inputs:  # bound by call()'s signature, as Keras does: layer(x, True), layer(targets, logits)
            inputs, training, kwargs = layer_calls.bind_positional(self, inputs, more_inputs, training, kwargs)
        if is_symbolic(inputs):
            return self._symbolic_call(inputs, **kwargs, **({} if training is None else {"training": training}))
        outer = _call_context.training
        training = outer if training is None else bool(training)
        xs = [layer_calls.layer_input(x) for x in flatten(inputs)]
        self._maybe_build([x.shape for x in xs])
        args = xs if isinstance(inputs, (list, tuple)) else xs[0]
        _call_context.training = training
        depth = layer_calls.enter_call(self)
        try:
            out = layer_calls.activation_function_after(self, self._concrete_call(args, xs, training, **kwargs))
            self._last_output_shape = (None,) + tuple(out.shape[1:]) if isinstance(out, np.ndarray) else None
            return pass_mask(inputs, out) if self.supports_masking else out
        finally:
            _call_context.training = outer
            layer_calls.leave_call(depth)

    def _concrete_call(self, args, xs, training, **kwargs):
        tape = active_tape()
        if type(self).backward is Layer.backward:  # composed of layers and ops, which record themselves
            out = layer_calls.run_call(self, args, layer_calls.call_kwargs(self, training, kwargs))
            if tape is not None and any(tape.requires_grad(x) for x in xs):
                self._check_outputs_tracked(tape, out)
            return out
        args = layer_calls.plain_args(args)
        if tape is None:
            return self.call(args, training=training, **kwargs)
        needs_w = bool(self.trainable_weights)
        needs_in = [tape.requires_grad(x) for x in xs]
        if not (needs_w or any(needs_in)):  # as _records_on: nothing to differentiate, plain inference
            return self.call(args, training=training, **kwargs)
        out, cache = self.forward(args, training=training, **kwargs)
        # Tensor views: new objects (never an input's), whose operators stay differentiable.
        outs = layer_calls.as_tensor_outputs(flatten(out))
        tape.record(self, cache, xs, outs, needs_in, needs_w)
        return outs if isinstance(out, (list, tuple)) else outs[0]

    def _records_on(self, tape, xs):
        """Whether a call on ``xs`` goes on ``tape``: trainable weights or an input needing a gradient."""
        return bool(self.trainable_weights) or any(tape.requires_grad(x) for x in xs)

    def _check_outputs_tracked(self, tape, out):
        for o in flatten(out):
            if isinstance(o, np.ndarray) and not tape.requires_grad(o):
                raise RuntimeError(
                    f"'{self.name}' ({type(self).__name__}).call() returned an array that was not produced by "
                    "a tlkit layer or op, so gradients can't flow through it. Compute it with tlkit.ops (or "
                    "layers such as tlkit.layers.Add), or give the layer a backward() method."
                )

    def _symbolic_call(self, inputs, **kwargs):
        ts = flatten(inputs)
        for t in ts:
            if not isinstance(t, KerasTensor):
                raise TypeError(
                    f"Layer '{self.name}' was called on a mix of symbolic tensors and {type(t).__name__}; "
                    "in the Functional API every input must come from tlkit.Input or another layer."
                )
        shapes = [t.shape for t in ts]
        self._maybe_build(shapes)
        out_shape = self.compute_output_shape(shapes if isinstance(inputs, (list, tuple)) else shapes[0])
        multi = isinstance(out_shape, list)
        outs = [KerasTensor(s, name=f"{self.name}/out{i}" if multi else self.name)
                for i, s in enumerate(out_shape if multi else [out_shape])]
        node = Node(self, ts, outs, kwargs)
        node.input_structure = isinstance(inputs, (list, tuple))
        self._inbound_nodes.append(node)
        return outs if multi else outs[0]

    @property
    def input(self):
        """The symbolic tensor(s) this layer was last called on in a Functional graph."""
        node = self._last_node("input")
        return list(node.inputs) if node.input_structure else node.inputs[0]

    @property
    def output(self):
        """The symbolic tensor(s) this layer's last Functional call produced."""
        outs = self._last_node("output").outputs
        return outs[0] if len(outs) == 1 else list(outs)

    def _last_node(self, what):
        if not self._inbound_nodes:
            raise AttributeError(f"Layer '{self.name}' has no {what}: it was never called on a symbolic tensor "
                                 "(tlkit.Input or another layer's output).")
        return self._inbound_nodes[-1]

    def call(self, inputs, training=False):
        raise NotImplementedError(f"Layer {type(self).__name__} must implement call().")

    def forward(self, inputs, training=False):
        """Outputs and the cache backward needs. Default: no cache."""
        return self.call(inputs, training=training), None

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        raise NotImplementedError

    def _backward_call(self, cache, dys, needs_input_grad, need_weight_grad, pre_activation=False):
        dy = dys if len(dys) > 1 else dys[0]
        kwargs = {"pre_activation": True} if pre_activation and self.supports_logit_fusion else {}
        dx, wgrads = self.backward(cache, dy, need_input_grad=any(needs_input_grad),
                                   need_weight_grad=need_weight_grad, **kwargs)
        return (dx if isinstance(dx, list) else [dx]), (wgrads or [])

    # ----- config -----
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._batch_input_shape is not None:
            config["batch_input_shape"] = list(self._batch_input_shape)
        return config

    def config_class_name(self):
        """The class name a model config stores for this layer; loading looks it up in the registry."""
        return type(self).__name__

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"
