"""Embedding: integer ids -> rows of a (input_dim, output_dim) table; ``mask_zero=True`` masks id 0."""
import numpy as np

from tlkit.engine import initializers, regularizers
from tlkit.engine.layer import Layer
from tlkit.engine.symbolic import is_symbolic
from tlkit.engine.tensor import attach_mask


class Embedding(Layer):
    """``Embedding(10000, 64, mask_zero=True)``: (batch, steps) ids -> (batch, steps, 64)."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, weights=None, input_length=None, lora_rank=None,
                 activity_regularizer=None, quantization_config=None, **kwargs):
        unsupported = {"embeddings_constraint": embeddings_constraint, "lora_rank": lora_rank,
                       "activity_regularizer": activity_regularizer, "quantization_config": quantization_config}
        if any(v is not None for v in unsupported.values()):
            raise ValueError(f"Embedding: tlkit does not support {sorted(k for k, v in unsupported.items() if v is not None)}"
                             "; remove them.")
        if input_length is not None and "input_shape" not in kwargs and "batch_input_shape" not in kwargs:
            kwargs["input_shape"] = (input_length,)  # Keras 2's way of giving the sequence length
        super().__init__(**kwargs)
        for what, v in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"Received an invalid value for argument `{what}`, expected a positive integer, "
                                 f"got {v}.")
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        if embeddings_initializer == "uniform":  # Keras's "uniform" is RandomUniform(-0.05, 0.05)
            embeddings_initializer = "random_uniform"
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.mask_zero = bool(mask_zero)
        self._initial_weights = weights

    def build(self, input_shape):
        self.embeddings = self.add_weight((self.input_dim, self.output_dim), self.embeddings_initializer,
                                          "embeddings", regularizer=self.embeddings_regularizer)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None
        self.built = True

    def _check_input_shapes(self, input_shapes):
        """Any number of ids per sample (the last axis is the sequence, not features)."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def compute_mask(self, inputs, mask=None):
        return np.asarray(inputs) != 0 if self.mask_zero else None

    def __call__(self, inputs, training=None, **kwargs):
        out = super().__call__(inputs, training=training, **kwargs)
        if self.mask_zero and not is_symbolic(inputs):
            out = attach_mask(out, self.compute_mask(inputs))
        return out

    def _ids(self, inputs):
        ids = np.asarray(inputs)
        if ids.dtype.kind == "f":
            ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.input_dim):
            raise ValueError(f"Layer '{self.name}' (Embedding) got ids in [{ids.min()}, {ids.max()}] but its table "
                             f"has input_dim={self.input_dim} rows; raise input_dim or clip the ids.")
        return ids

    def call(self, inputs, training=False):
        return self.embeddings.value[self._ids(inputs)]

    def forward(self, inputs, training=False):
        ids = self._ids(inputs)
        return self.embeddings.value[ids], ids

    def backward(self, ids, dy, need_input_grad=True, need_weight_grad=True):
        grads = []
        if need_weight_grad:
            table = np.zeros_like(self.embeddings.value)
            np.add.at(table, ids.reshape(-1), dy.reshape(-1, self.output_dim))
            grads.append((self.embeddings, table))
        return (np.zeros(ids.shape, np.float32) if need_input_grad else None), grads

    def get_config(self):
        return {
            **super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
            "mask_zero": self.mask_zero,
        }
