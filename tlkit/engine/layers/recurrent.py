"""The recurrent layer base: Keras's RNN arguments (return_sequences, return_state, go_backwards,
stateful, initial_state, dropout, recurrent_dropout, unroll), masks, and the forward/backward through
time of kernels/recurrent.py. LSTM, GRU and SimpleRNN (recurrent_layers.py) say which cell and weights.

A mask (Keras's: from ``Embedding(mask_zero=True)``, ``Masking``, or ``mask=``) travels as the
``_keras_mask`` attribute of the array a layer returns (see masking.py). Masked steps keep the
previous state and repeat the previous output; with ``return_sequences`` the mask goes on.
"""
import numpy as np

from tlkit.engine import initializers, regularizers
from tlkit.engine.kernels.recurrent import GATES, rnn_backward, rnn_forward
from tlkit.engine.kernels.recurrent_cells import ACTIVATION_CODES
from tlkit.engine.layer import Layer
from tlkit.engine.symbolic import is_symbolic
from tlkit.engine.tensor import attach_mask, mask_of
from tlkit.utils import workspace
from tlkit.utils.random import get_rng
from tlkit.utils.text import snake_case

# Keras arguments accepted at their only meaningful value here (configs saved by Keras carry them).
_IGNORED = {"implementation": None, "use_cudnn": None, "time_major": False, "zero_output_for_mask": None,
            "activity_regularizer": None, "kernel_constraint": None, "recurrent_constraint": None,
            "bias_constraint": None}


def _activation(name, what):
    name = "linear" if name is None else getattr(name, "__name__", name)
    if name not in ACTIVATION_CODES:
        raise ValueError(f"Unsupported {what} {name!r} for a recurrent layer; use one of {sorted(ACTIVATION_CODES)}.")
    return name


def _time_major(a):
    """(B, T, F) -> a float32 (T, B, F) copy in a reused buffer (``utils.workspace``: a fresh array of
    several MB costs its page faults on every call); the caller gives it back when done."""
    out = workspace.take((a.shape[1], a.shape[0]) + a.shape[2:], np.float32)
    np.copyto(out, a.transpose(1, 0, 2), casting="unsafe")
    return out


class RNNBase(Layer):
    """Shared by LSTM, GRU and SimpleRNN. Subclasses set ``cell`` and ``n_states`` and may extend
    ``_make_weights``/``_weight_grads``/``get_config``."""

    cell = None
    n_states = 1

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, **kwargs):
        for key, default in _IGNORED.items():
            value = kwargs.pop(key, default)
            if key.endswith(("constraint", "regularizer")) and value is not None:
                raise ValueError(f"{type(self).__name__}: tlkit does not support {key}; remove it.")
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Received an invalid value for argument `units`, expected a positive integer, got {units}.")
        for what, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0 <= rate < 1:
                raise ValueError(f"`{what}` must be in [0, 1), got {rate}.")
        self.units = int(units)
        self.activation = _activation(activation, "activation")
        self.recurrent_activation = _activation(recurrent_activation, "recurrent_activation")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.dropout, self.recurrent_dropout, self.seed = float(dropout), float(recurrent_dropout), seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self.return_sequences, self.return_state = bool(return_sequences), bool(return_state)
        self.go_backwards, self.stateful, self.unroll = bool(go_backwards), bool(stateful), bool(unroll)
        self.states = None  # stateful: the last call's final states

    # ----- weights -----
    def build(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects input of shape (batch, timesteps, "
                             f"features) with known features, got {tuple(shape)}.")
        self._make_weights(int(shape[-1]))
        self.built = True

    def _make_weights(self, n_in):
        g = GATES[self.cell] * self.units
        prefix = f"{snake_case(type(self).__name__)}_cell/"
        self.kernel = self.add_weight((n_in, g), self.kernel_initializer, prefix + "kernel",
                                      regularizer=self.kernel_regularizer)
        self.recurrent_kernel = self.add_weight((self.units, g), self.recurrent_initializer,
                                                prefix + "recurrent_kernel", regularizer=self.recurrent_regularizer)
        self.bias = self.add_weight(self._bias_shape(g), self._bias_init(), prefix + "bias",
                                    regularizer=self.bias_regularizer) if self.use_bias else None

    def _bias_shape(self, g):
        return (g,)

    def _bias_init(self):
        return self.bias_initializer

    def _biases(self):
        """(input-side bias, recurrent-side bias) as the kernels take them."""
        return (None if self.bias is None else self.bias.value), None

    def _weight_grads(self, grads):
        out = [(self.kernel, grads["kernel"]), (self.recurrent_kernel, grads["recurrent_kernel"])]
        if self.bias is not None:
            out.append((self.bias, grads["bias"]))
        return out

    # ----- shapes -----
    def compute_output_shape(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        out = (shape[0], shape[1], self.units) if self.return_sequences else (shape[0], self.units)
        return [out] + [(shape[0], self.units)] * self.n_states if self.return_state else out

    # ----- calling -----
    def __call__(self, inputs, training=None, mask=None, initial_state=None, **kwargs):
        if initial_state is not None:
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            if len(states) != self.n_states:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) takes {self.n_states} initial state "
                                 f"array(s), got {len(states)}.")
            inputs = [inputs] + states
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        if is_symbolic(first):
            return super().__call__(inputs, training=training, **kwargs)
        mask = mask_of(first) if mask is None else np.asarray(mask, bool)
        if mask is not None:
            kwargs["mask"] = mask
        out = super().__call__(inputs, training=training, **kwargs)
        if mask is not None and self.return_sequences:
            if self.return_state:
                out = [attach_mask(out[0], mask)] + list(out[1:])
            else:
                out = attach_mask(out, mask)
        return out

    def call(self, inputs, training=False, mask=None):
        return self.forward(inputs, training=training, mask=mask)[0]

    def _initial_states(self, given, n):
        if given:
            return [np.asarray(s, np.float32) for s in given]
        if self.stateful:
            if self.states is None or self.states[0].shape[0] != n:
                if self.states is not None:
                    raise ValueError(f"Stateful layer '{self.name}' holds states for batch size "
                                     f"{self.states[0].shape[0]} but got a batch of {n}; call reset_states() first.")
                self.states = [np.zeros((n, self.units), np.float32) for _ in range(self.n_states)]
            return self.states
        return [np.zeros((n, self.units), np.float32) for _ in range(self.n_states)]

    def reset_states(self, states=None):
        self.states = None if states is None else [np.asarray(s, np.float32) for s in states]

    reset_state = reset_states

    def _dropout_mask(self, shape, rate, training):
        if not training or rate == 0:
            return None
        rng = self._rng or get_rng()
        return (rng.random(shape, dtype=np.float32) >= rate).astype(np.float32) / np.float32(1 - rate)

    def forward(self, inputs, training=False, mask=None):
        x, given = (inputs[0], inputs[1:]) if isinstance(inputs, list) else (inputs, [])
        if x.ndim != 3:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects 3D input (batch, timesteps, "
                             f"features), got shape {x.shape}.")
        n, t_len, _ = x.shape
        if mask is not None and mask.shape != (n, t_len):
            raise ValueError(f"Layer '{self.name}': mask shape {mask.shape} does not match the input's (batch, "
                             f"timesteps) = {(n, t_len)}.")
        states = self._initial_states(given, n)
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        in_drop = self._dropout_mask((n, x.shape[2]), self.dropout, training)
        rec_drop = self._dropout_mask((n, self.units), self.recurrent_dropout, training)
        if in_drop is not None:
            x = x * in_drop[:, None, :]
        x_tm = _time_major(x)
        bias, rbias = self._biases()
        seq = rnn_forward(self.cell, x_tm, self.kernel.value, self.recurrent_kernel.value, bias, rbias, states[0],
                          states[-1], None if mask is None else mask.T, self.activation, self.recurrent_activation,
                          rec_drop)
        workspace.give_back_when_dead(seq, [x_tm])
        final = [seq.h[-1]] + ([seq.c[-1]] if self.cell == "lstm" else [])
        if self.stateful:
            self.states = [s.copy() for s in final]
        out = seq.out.transpose(1, 0, 2).copy() if self.return_sequences else seq.out[-1].copy()
        result = [out] + [s.copy() for s in final] if self.return_state else out
        return result, (seq, in_drop, len(given))

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        seq, in_drop, n_given = cache
        dys = list(dy) if self.return_state else [dy]
        d_out = dys[0]
        d_seq = _time_major(d_out) if self.return_sequences and d_out is not None else None
        d_last = d_out if not self.return_sequences else None
        states = (dys[1:] + [None, None])[:2]
        grads = rnn_backward(seq, d_seq, d_last, states[0], states[1])
        workspace.give_back([d_seq])
        dx = grads["x"].transpose(1, 0, 2)
        if in_drop is not None:
            dx = dx * in_drop[:, None, :]
        if self.go_backwards:
            dx = dx[:, ::-1]
        dx = np.ascontiguousarray(dx, np.float32)
        wgrads = self._weight_grads(grads) if need_weight_grad else []
        if n_given:
            d_states = [grads["h0"], grads["c0"]][:self.n_states]
            return [dx] + [g.astype(np.float32) for g in d_states], wgrads
        return dx, wgrads

    # ----- config -----
    def get_config(self):
        return {
            **super().get_config(), "units": self.units, "activation": self.activation,
            "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout, "seed": self.seed,
            "return_sequences": self.return_sequences, "return_state": self.return_state,
            "go_backwards": self.go_backwards, "stateful": self.stateful, "unroll": self.unroll,
        }
