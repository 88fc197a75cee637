"""Bidirectional, TimeDistributed and RepeatVector. The two wrappers are composed of their inner layers
(which record their own backward on the tape) and tlkit.ops (reversal, merging, reshapes)."""
import numpy as np

from tlkit.engine import ops
from tlkit.engine.layer import Layer
from tlkit.engine.symbolic import is_symbolic
from tlkit.engine.tensor import attach_mask, mask_of

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _layer_entry(layer):
    return {"class_name": layer.config_class_name(), "config": layer.get_config()}


def _inner(layer, wrapper):
    if isinstance(layer, dict):
        raise ValueError(f"{wrapper}.from_config needs the inner layer built; load the model with "
                         "tlkit.models.load_model or model_from_json, which build it from its config.")
    if not isinstance(layer, Layer):
        raise ValueError(f"{wrapper} wraps a layer instance, e.g. {wrapper}(LSTM(32)); got {layer!r}.")
    return layer


class _MaskedCall(Layer):
    """A concrete call passes the input's mask on as ``mask=`` (symbolic calls carry none)."""

    def __call__(self, inputs, training=None, mask=None, **kwargs):
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        if is_symbolic(first):
            return super().__call__(inputs, training=training, **kwargs)
        mask = mask_of(first) if mask is None else np.asarray(mask, bool)
        return super().__call__(inputs, training=training, mask=mask, **kwargs)


class Bidirectional(_MaskedCall):
    """``Bidirectional(LSTM(32, return_sequences=True), merge_mode="concat")``: a forward and a backward
    copy of the layer (weights in that order, as Keras), outputs merged (None: both returned).
    ``initial_state``: the forward copy's states, then the backward copy's (as Keras splits them)."""

    keras3_subpaths = ("forward_layer", "backward_layer")  # where Keras 3 weight files keep the two copies

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        layer = _inner(layer, "Bidirectional")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"Invalid merge mode {merge_mode!r}; use one of {MERGE_MODES}.")
        if not hasattr(layer, "go_backwards"):
            raise ValueError(f"Bidirectional wraps a recurrent layer (LSTM, GRU, SimpleRNN); got {type(layer).__name__}.")
        super().__init__(**kwargs)
        config = layer.get_config()
        config.pop("batch_input_shape", None)
        self.forward_layer = type(layer).from_config({**config, "name": f"forward_{layer.name}"})
        if backward_layer is None:
            backward_layer = type(layer).from_config({**config, "name": f"backward_{layer.name}",
                                                      "go_backwards": not layer.go_backwards})
            self._custom_backward = False
        else:
            self._custom_backward = True
        self.backward_layer = _inner(backward_layer, "Bidirectional")
        self.merge_mode = merge_mode
        self.return_sequences, self.return_state = layer.return_sequences, layer.return_state
        self._initial_weights = weights

    def __call__(self, inputs, training=None, mask=None, initial_state=None, **kwargs):
        if initial_state is not None:
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            want = self.forward_layer.n_states + self.backward_layer.n_states
            if len(states) != want:
                raise ValueError(f"Bidirectional '{self.name}' takes {want} initial state arrays (the forward "
                                 f"layer's, then the backward layer's), got {len(states)}.")
            inputs = [inputs] + states
        return super().__call__(inputs, training=training, mask=mask, **kwargs)

    def build(self, input_shape):
        input_shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        for sub in (self.forward_layer, self.backward_layer):
            if not sub.built:
                sub.build(input_shape)
                sub.built = True
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None
        self.built = True

    def _merged_shape(self, shape):
        if self.merge_mode == "concat":
            return shape[:-1] + (2 * shape[-1],)
        return [shape, shape] if self.merge_mode is None else shape

    def compute_output_shape(self, input_shape):
        input_shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        out = self.forward_layer.compute_output_shape(input_shape)
        if not self.return_state:
            return self._merged_shape(tuple(out))
        merged = self._merged_shape(tuple(out[0]))
        return (merged if isinstance(merged, list) else [merged]) + list(out[1:]) * 2

    def _merge(self, y, yb):
        if self.merge_mode == "concat":
            return ops.concatenate([y, yb], axis=-1)
        if self.merge_mode == "sum":
            return ops.add(y, yb)
        if self.merge_mode == "mul":
            return ops.multiply(y, yb)
        if self.merge_mode == "ave":
            return ops.multiply(ops.add(y, yb), 0.5)
        return [y, yb]

    def call(self, inputs, training=False, mask=None):
        x, states = (inputs[0], list(inputs[1:])) if isinstance(inputs, list) else (inputs, [])
        half = self.forward_layer.n_states
        y = self.forward_layer(x, training=training, mask=mask, initial_state=states[:half] or None)
        yb = self.backward_layer(x, training=training, mask=mask, initial_state=states[half:] or None)
        states = []
        if self.return_state:
            y, states, yb, states_b = y[0], list(y[1:]), yb[0], list(yb[1:])
            states += states_b
        if self.return_sequences:
            yb = ops.getitem(yb, (slice(None), slice(None, None, -1)))
        merged = self._merge(y, yb)
        if self.return_sequences and mask is not None:
            merged = [attach_mask(m, mask) for m in merged] if isinstance(merged, list) else attach_mask(merged, mask)
        if not self.return_state:
            return merged
        return (merged if isinstance(merged, list) else [merged]) + states

    def reset_states(self, states=None):
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    def get_config(self):
        config = {**super().get_config(), "layer": _layer_entry(self.forward_layer), "merge_mode": self.merge_mode}
        config["layer"]["config"]["name"] = self.forward_layer.name[len("forward_"):]
        if self._custom_backward:
            config["backward_layer"] = _layer_entry(self.backward_layer)
        return config


class TimeDistributed(_MaskedCall):
    """``TimeDistributed(Dense(8))``: the layer applied to every step of (batch, steps, ...)."""

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = _inner(layer, "TimeDistributed")

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"TimeDistributed '{self.name}' needs input of rank >= 3 (batch, steps, ...), "
                             f"got shape {tuple(input_shape)}.")
        if not self.layer.built:
            self.layer._maybe_build([(None,) + tuple(input_shape[2:])])
        self.built = True

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None,) + tuple(input_shape[2:]))
        return tuple(input_shape[:2]) + tuple(inner[1:])

    def call(self, inputs, training=False, mask=None):
        n, steps = inputs.shape[:2]
        folded = ops.reshape(inputs, (n * steps,) + inputs.shape[2:])  # all steps as one batch: one inner call
        if mask is not None and mask.ndim > 2:  # a mask within each step (the words of each sentence): the inner layer's
            folded = attach_mask(folded, mask.reshape((n * steps,) + mask.shape[2:]))
        y = self.layer(folded, training=training)
        return attach_mask(ops.reshape(y, (n, steps) + y.shape[1:]), _steps_mask(mask, mask_of(y), n, steps))

    def get_config(self):
        return {**super().get_config(), "layer": _layer_entry(self.layer)}


def _steps_mask(mask, inner_mask, n, steps):
    """TimeDistributed's output mask (Keras 2's rule): the inner layer's own output mask, step by step; else the
    input's (batch, steps) mask, a step kept when any position within it is."""
    if mask is None or mask.ndim <= 2:
        return mask
    if inner_mask is not None:
        return inner_mask.reshape((n, steps) + inner_mask.shape[1:])
    return mask.reshape(n, steps, -1).any(axis=-1)


class RepeatVector(Layer):
    """``RepeatVector(3)``: (batch, features) -> (batch, 3, features)."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"RepeatVector expects a positive integer n, got {n!r}.")
        self.n = int(n)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"RepeatVector '{self.name}' expects 2D input (batch, features), got {tuple(input_shape)}.")
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def call(self, inputs, training=False):
        return np.repeat(inputs[:, None, :], self.n, axis=1)

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        return dy.sum(axis=1), []

    def get_config(self):
        return {**super().get_config(), "n": self.n}
