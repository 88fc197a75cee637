"""What a Layer call does beyond the layer's own maths: Keras's optional call arguments, inputs that
keep their tape identity, and losses added with ``add_loss`` during a call."""
import inspect
import threading

import numpy as np

from tlkit.engine.symbolic import KerasTensor, as_float_array, flatten, is_symbolic
from tlkit.engine.tensor import Tensor
from tlkit.utils.registration import registered_name

_accepts = {}  # Layer subclass -> (call takes training, call takes mask)


class _CallState(threading.local):
    """Per thread: the training flag of the enclosing layer call, the nesting depth of layer calls and
    whether layers skip their initializers. Class-level defaults: a read needs no fallback."""
    training = False
    depth = 0
    skip_init = False


_state = _CallState()
_any_added_losses = [False]


def call_kwargs(layer, training, kwargs):
    """The keyword arguments for ``layer.call``: ``training``/``mask`` only when call declares them (or **kwargs)."""
    cls = type(layer)
    accepts = _accepts.get(cls)
    if accepts is None:
        params = inspect.signature(cls.call).parameters
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        accepts = _accepts[cls] = ("training" in params or var_kw, "mask" in params or var_kw)
    if accepts == (True, True):
        return dict(kwargs, training=training)
    out = dict(kwargs)
    if accepts[0]:
        out["training"] = training
    if not accepts[1]:
        out.pop("mask", None)
    return out


def layer_input(x):
    """A call input as a float32 array. A Tensor stays the same object (the tape knows it by identity);
    a Tensor or Variable of another dtype becomes float32 through ops.cast, which records."""
    if type(x) is np.ndarray and x.dtype == np.float32:  # the common case, as it is
        return x
    if isinstance(x, Tensor) and x.dtype == np.float32:
        return x
    if isinstance(x, Tensor) or hasattr(x, "_tensor_value"):
        from tlkit.engine import ops

        return ops.cast(x, "float32")
    return as_float_array(x)


def plain_args(args):
    """The layer's own numpy maths gets plain arrays: a Tensor's operators would record ops."""
    if isinstance(args, list):
        return [a.view(np.ndarray) if isinstance(a, Tensor) else a for a in args]
    return args.view(np.ndarray) if isinstance(args, Tensor) else args


def as_tensor_outputs(outs):
    return [o.view(Tensor) if isinstance(o, np.ndarray) else o for o in outs]


def enter_call(layer):
    """Marks the start of a layer call; returns the depth ``leave_call`` restores. The outermost call
    first clears the losses layers added in the previous call (no walk when nothing ever added one)."""
    depth = _state.depth
    if depth == 0 and _any_added_losses[0]:
        for sub in [layer] + layer._all_layers():
            if sub.__dict__.get("_added_losses"):
                sub._added_losses = []
    _state.depth = depth + 1
    return depth


def leave_call(depth):
    _state.depth = depth


def add_loss(layer, loss):
    _any_added_losses[0] = True
    layer.__dict__.setdefault("_added_losses", []).append(loss)


def added_losses(layer):
    """Losses added with add_loss during the last call, by this layer and those inside it."""
    if not _any_added_losses[0]:  # nothing ever called add_loss: no walk over the layers
        return []
    out = []
    for sub in [layer] + layer._all_layers():
        out.extend(sub.__dict__.get("_added_losses", ()))
    return out


def traced_output_shape(layer, input_shape):
    """The shape(s) ``layer.call`` returns for ``input_shape``: run once on zeros (unknown sizes as 1)."""
    def dummy(shape):
        return np.zeros([1 if d is None else d for d in shape], np.float32)

    many = isinstance(input_shape, list)
    inputs = [dummy(s) for s in input_shape] if many else dummy(input_shape)
    out = run_call(layer, inputs, call_kwargs(layer, False, {}))
    shapes = [(None,) + tuple(np.shape(o))[1:] for o in flatten(out)]
    return shapes if isinstance(out, (list, tuple)) else shapes[0]


def run_call(layer, inputs, kwargs):
    """``layer.call(inputs, **kwargs)``; a layer first called with several positional tensors gets them so."""
    if layer.__dict__.get("_spread_inputs") and isinstance(inputs, (list, tuple)):
        return layer.call(*inputs, **kwargs)
    return layer.call(inputs, **kwargs)


def use_activation_function(layer, function):
    """A kernel layer given a function of user code as activation: it computes its linear output (the
    fused kernels, no fusing with the next layer or writing into a shared buffer), then ``function``."""
    if function is None:
        return
    layer._activation_function = function
    layer._activation_config = registered_name(function)
    layer.fuses_with = lambda input_shape, consumer: None
    layer.accepts_output_buffer = layer.writes_channel_slice = False


def activation_function_after(layer, out):
    function = layer.__dict__.get("_activation_function")
    return out if function is None else function(out)


def activation_config(layer):
    """What a config says of ``layer.activation``: the user's function by its registered name."""
    return layer.__dict__.get("_activation_config") or layer.activation


def bind_positional(layer, inputs, more, training, kwargs):
    """(inputs, training, kwargs) of ``layer(inputs, *more)``: arguments after the first bind to ``call``'s
    parameters by position, as Keras binds them. Tensors are further inputs (``call(self, targets, logits)``:
    the layer then gets them spread, see ``run_call``); anything else (``layer(x, True)``) is the argument
    of the parameter it stands for."""
    params = [p.name for p in inspect.signature(layer.call).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    tensors, kwargs = [inputs], dict(kwargs)
    for i, value in enumerate(more):
        if isinstance(value, (np.ndarray, KerasTensor)) or is_symbolic(value):
            tensors.append(value)
        elif i < len(params):
            kwargs[params[i]] = value
        else:
            raise TypeError(f"{type(layer).__name__}.call() takes {len(params) + 1} positional arguments; got "
                            f"{len(more) + 1}.")
    training = kwargs.pop("training", training)
    if len(tensors) > 1:
        layer._spread_inputs = True
        return tensors, training, kwargs
    return inputs, training, kwargs
