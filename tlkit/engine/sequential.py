"""Sequential: a plain stack of layers."""
from tlkit.engine.layer import Layer
from tlkit.engine.layers.input_layer import InputLayer
from tlkit.engine.model import Model
from tlkit.engine.registry import register_model_class
from tlkit.engine.saving.config import sequential_config, sequential_from_config
from tlkit.engine.symbolic import KerasTensor
from tlkit.utils.text import format_shape


class Sequential(Model):
    """``Sequential([Input((28, 28, 1)), Conv2D(8, 3), Flatten(), Dense(10)])`` or ``.add(layer)``.

    With a known input shape every layer is built (and its shapes checked) as it is added.
    """

    def __init__(self, layers=None, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self._stack = []
        self._input_layer = None
        self._output_tensor = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, KerasTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer
        if not isinstance(layer, Layer):
            raise TypeError(f"Only layers can be added to a Sequential model; received {layer!r} "
                            f"(of type {type(layer).__name__}).")
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._stack:
                raise ValueError("An Input can only be the first entry of a Sequential model.")
            self._input_layer = layer
            self._output_tensor = layer.output
            return
        if any(l.name == layer.name for l in self._stack):
            raise ValueError(f"All layers added to a Sequential model should have unique names. Name "
                             f"'{layer.name}' is already the name of a layer in this model.")
        if self._input_layer is None and not self._stack and getattr(layer, "_batch_input_shape", None):
            self._input_layer = InputLayer(batch_shape=layer._batch_input_shape)
            self._output_tensor = self._input_layer.output
        self._stack.append(layer)
        self._sublayers.append(layer)
        if self._output_tensor is not None:
            self._output_tensor = layer(self._output_tensor)

    def pop(self):
        if not self._stack:
            raise TypeError("There are no layers in the model.")
        layer = self._stack.pop()
        self._sublayers.remove(layer)
        self._rebuild_symbolic()
        return layer

    def _rebuild_symbolic(self):
        if self._input_layer is not None:
            x = self._input_layer.output
            for layer in self._stack:
                x = layer(x)
            self._output_tensor = x

    @property
    def layers(self):
        return list(self._stack)

    @property
    def inputs(self):
        return [self._input_layer.output] if self._input_layer is not None else None

    @property
    def outputs(self):
        return [self._output_tensor] if self._input_layer is not None else None

    @property
    def input_shape(self):
        return self._input_layer.batch_shape if self._input_layer is not None else None

    @property
    def output_shape(self):
        return self._output_tensor.shape if self._input_layer is not None else None

    @property
    def input_names(self):
        return [self._input_layer.name] if self._input_layer is not None else ["input"]

    def _maybe_build(self, input_shapes):
        if self._input_layer is None:
            self.build(tuple(input_shapes[0]))
        self._check_graph_inputs(input_shapes)

    def _check_graph_inputs(self, input_shapes):
        want = self._input_layer.batch_shape
        got = tuple(input_shapes[0])
        if len(input_shapes) != 1 or len(got) != len(want) or any(
                w is not None and g != w for g, w in zip(got[1:], want[1:])):
            raise ValueError(f"Input 0 of model '{self.name}' is incompatible: the model expects shape "
                             f"{format_shape(want)}, but it received an input with shape {format_shape(got)}.")

    def build(self, input_shape=None):
        if self._input_layer is None:
            if input_shape is None:
                raise ValueError("Sequential.build needs an input shape, e.g. model.build((None, 28, 28, 1)).")
            self._input_layer = InputLayer(batch_shape=(None,) + tuple(input_shape[1:]))
            self._rebuild_symbolic()
        self.built = True

    def call(self, inputs, training=False):
        x = inputs
        for layer in self._stack:
            x = layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        if self._output_tensor is None:
            self.build(input_shape)
        return self._output_tensor.shape

    def _summary_rows(self):
        rows = []
        for layer in self._stack:
            shape = layer._inbound_nodes[-1].outputs[0].shape if layer._inbound_nodes else None
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, f"{layer.count_params():,}", []))
        return rows

    def get_config(self):
        return sequential_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return sequential_from_config(config, custom_objects, model_class=cls)

    def config_class_name(self):
        return "Sequential"


register_model_class(Sequential, "Sequential")
