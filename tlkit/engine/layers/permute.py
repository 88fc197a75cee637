"""Permute: reorders the non-batch axes."""
from tlkit.engine import ops
from tlkit.engine.layer import Layer


class Permute(Layer):
    """``Permute((2, 1))``: axes numbered from 1 (the batch axis stays first)."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Invalid permutation argument `dims` for Permute Layer. The set of indices in `dims` must "
                             f"be consecutive and start from 1. Received dims={dims}")

    def build(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"Layer '{self.name}' (Permute): dims {self.dims} do not fit an input of shape "
                             f"{tuple(input_shape)}; give one entry per non-batch axis.")
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def call(self, inputs, training=False):
        return ops.transpose(inputs, (0,) + self.dims)

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}
