"""Input: the symbolic entry point of a Functional model."""
from tlkit.engine.layer import Layer
from tlkit.engine.symbolic import KerasTensor, Node


class InputLayer(Layer):
    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        if batch_shape is None and self._batch_input_shape is not None:
            batch_shape = self._batch_input_shape  # Keras 2 configs say batch_input_shape
        if batch_shape is None:
            if shape is None:
                raise ValueError("Input needs a `shape` (without the batch dimension), e.g. Input((224, 224, 3)).")
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            batch_shape = (batch_size,) + shape
        self.batch_shape = tuple(None if s is None else int(s) for s in batch_shape)
        for s in self.batch_shape[1:]:
            if s is not None and s <= 0:
                raise ValueError(f"Input shape must have positive sizes, got {self.batch_shape[1:]}.")
        self.built = True
        self._tensor = KerasTensor(self.batch_shape, name=self.name)
        Node(self, [], [self._tensor])

    @property
    def output(self):
        return self._tensor

    input = output

    def call(self, inputs, training=False):
        return inputs

    def compute_output_shape(self, input_shape):
        return self.batch_shape

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": self.dtype, "name": self.name}


def Input(shape=None, batch_size=None, dtype=None, batch_shape=None, name=None):
    """A symbolic input: ``x = tlkit.Input((224, 224, 3))``."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape, name=name).output
