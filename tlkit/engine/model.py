"""Model: the Functional API (``Model(inputs, outputs)``) and subclassing (``class M(Model)``).

Both run through the same tape, so both train the same way; a model is also a layer and can
be called inside another model (a frozen base under a new head).
"""
import json
import os

import numpy as np

from tlkit.engine.functional import Graph
from tlkit.engine.keras2_methods import Keras2Methods
from tlkit.engine.layer import Layer
from tlkit.engine.layers.input_layer import InputLayer
from tlkit.engine.registry import register_model_class
from tlkit.engine.saving.config import functional_config, functional_from_config
from tlkit.engine.summary import summarize
from tlkit.engine.symbolic import flatten
from tlkit.engine.trainer import Trainer
from tlkit.utils.text import format_shape


class Model(Keras2Methods, Trainer, Layer):
    """``Model(inputs, outputs)`` for a layer graph, or subclass it and define ``call``.

    >>> x = tlkit.Input((32, 32, 3)); y = tlkit.layers.Dense(10)(tlkit.layers.Flatten()(x))
    >>> model = tlkit.Model(x, y)

    >>> class MyModel(tlkit.Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.flatten = tlkit.layers.Flatten(); self.dense = tlkit.layers.Dense(10)
    ...     def call(self, inputs, training=False):
    ...         return self.dense(self.flatten(inputs))
    """

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        Layer.__init__(self, name=name, trainable=trainable, **kwargs)
        self._graph = None
        Trainer.__init__(self)
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError("A Functional model needs both `inputs` and `outputs`: tlkit.Model(inputs, outputs).")
            self._input_struct = inputs
            self._output_struct = outputs
            graph = Graph(inputs, outputs, self.name)
            self._graph = graph
            for layer in graph.layers:
                if layer not in self._sublayers:
                    self._sublayers.append(layer)
            self.built = True

    # ----- structure -----
    @property
    def layers(self):
        if self._graph is not None:
            return list(self._graph.layers)
        return list(self._sublayers)

    def get_layer(self, name=None, index=None):
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only has "
                                 f"{len(self.layers)} layers.")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[l.name for l in self.layers]}.")

    @property
    def inputs(self):
        return list(self._graph.inputs) if self._graph is not None else None

    @property
    def outputs(self):
        return list(self._graph.outputs) if self._graph is not None else None

    @property
    def input(self):
        return _one_or_list(self.inputs, self, "input")

    @property
    def output(self):
        return _one_or_list(self.outputs, self, "output")

    @property
    def input_shape(self):
        shapes = [t.shape for t in self._graph.inputs] if self._graph is not None else []
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self._graph.outputs] if self._graph is not None else []
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input_names(self):
        return [t.node.layer.name for t in self._graph.inputs] if self._graph is not None else []

    @property
    def output_names(self):
        if self._graph is None:
            return ["output"]
        return [t.node.layer.name for t in self._graph.outputs]

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        summarize(self, line_length=line_length, print_fn=print_fn, show_trainable=show_trainable,
                  layer_range=layer_range, positions=positions, expand_nested=expand_nested)

    def _summary_rows(self):
        rows = []
        for layer in self.layers:
            nodes = [n for n in layer._inbound_nodes if self._graph is None or n in self._graph.nodes]
            if isinstance(layer, InputLayer):
                shape = layer.batch_shape
            elif nodes:
                shape = [t.shape for t in nodes[0].outputs]
                shape = shape[0] if len(shape) == 1 else shape
            else:
                shape = getattr(layer, "_last_output_shape", None)
            inbound = []
            if self._graph is not None and nodes and len(self._graph.inputs) + len(self._graph.nodes) > 1:
                inbound = [t.node.layer.name for n in nodes for t in n.inputs]
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, f"{layer.count_params():,}",
                         inbound if self._is_branchy() else []))
        return rows

    def _is_branchy(self):
        if self._graph is None:
            return False
        return any(len(n.inputs) > 1 for n in self._graph.nodes) or len(self._graph.inputs) > 1

    # ----- calling -----
    def __call__(self, inputs, training=None, **kwargs):
        if isinstance(inputs, dict):
            inputs = self._inputs_from_dict(inputs)
        out = super().__call__(inputs, training=training, **kwargs)
        return out

    def _inputs_from_dict(self, data):
        if self._graph is None:
            raise ValueError("Dict inputs need a Functional model with named inputs.")
        missing = [n for n in self.input_names if n not in data]
        if missing:
            raise ValueError(f"Model '{self.name}' expects inputs named {self.input_names}; missing {missing}.")
        arrays = [data[n] for n in self.input_names]
        return arrays if len(arrays) > 1 else arrays[0]

    def _maybe_build(self, input_shapes):
        if self._graph is not None:
            self._check_graph_inputs(input_shapes)
        elif not self.built:
            self.built = True

    def _check_graph_inputs(self, input_shapes):
        expected = [t.shape for t in self._graph.inputs]
        if len(input_shapes) != len(expected):
            raise ValueError(f"Model '{self.name}' expects {len(expected)} input(s), but it received "
                             f"{len(input_shapes)} input tensors.")
        for i, (got, want) in enumerate(zip(input_shapes, expected)):
            got = tuple(got)
            if len(got) != len(want) or any(w is not None and g is not None and g != w
                                            for g, w in zip(got[1:], want[1:])):
                raise ValueError(
                    f"Input {i} of model '{self.name}' is incompatible: the model expects shape "
                    f"{format_shape(want)}, but it received an input with shape {format_shape(got)}."
                )

    def call(self, inputs, training=False):
        if self._graph is None:
            raise NotImplementedError(
                f"Model '{self.name}' has no layer graph: subclass tlkit.Model and define call(inputs, training=False), "
                "or build it with tlkit.Model(inputs, outputs)."
            )
        outs = self._graph.run(flatten(inputs), training)
        return outs[0] if len(outs) == 1 else outs

    def compute_output_shape(self, input_shape):
        if self._graph is not None:
            shapes = [t.shape for t in self._graph.outputs]
            return shapes[0] if len(shapes) == 1 else shapes
        # Subclassed model: run it once on zeros to find out.
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if any(s is None for shape in shapes for s in shape[1:]):
            raise ValueError(f"Model '{self.name}': can't infer output shapes from input shape {input_shape} "
                             "with unknown sizes.")
        dummies = [np.zeros((1,) + tuple(s[1:]), np.float32) for s in shapes]
        out = self(dummies if isinstance(input_shape, list) else dummies[0])
        outs = [(None,) + o.shape[1:] for o in flatten(out)]
        return outs if isinstance(out, list) else outs[0]

    def build(self, input_shape):
        """Create a subclassed model's weights by calling it once on zeros of ``input_shape``."""
        if self._graph is None:
            shapes = input_shape if isinstance(input_shape, list) else [input_shape]
            dummies = [np.zeros((1,) + tuple(s[1:]), np.float32) for s in shapes]
            self(dummies if isinstance(input_shape, list) else dummies[0])
        self.built = True

    # ----- files -----
    def save(self, filepath, overwrite=True, include_optimizer=True, metadata=None):
        """Architecture (JSON config), weights, compile arguments and optimizer state in one file: Keras 3's
        zip for a path ending in ``.keras``, HDF5 (Keras 2's layout) otherwise.

        ``metadata`` (tlkit extension): a JSON-able dict stored with the model and read back as
        ``load_model(path).metadata`` (the CLI keeps class names and preprocessing there).
        """
        _model_files().save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer,
                                  metadata=metadata)

    def save_weights(self, filepath, overwrite=True):
        hdf5 = _hdf5()
        _check_h5_path(filepath)
        hdf5.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, by_name=False, skip_mismatch=False):
        _model_files().load_weights(self, filepath, by_name=by_name, skip_mismatch=skip_mismatch)

    def get_config(self):
        if self._graph is None:
            return {"name": self.name, "trainable": self.trainable}
        return functional_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A Functional model from ``get_config()`` (layers from the registry and ``custom_objects``), or
        ``cls(**config)`` for a subclassed model's own config."""
        if "layers" in config and "input_layers" in config:
            return functional_from_config(config, custom_objects, model_class=cls)
        return cls(**config)

    def to_json(self, **kwargs):
        """The architecture as JSON (no weights): ``models.model_from_json(text)`` rebuilds it."""
        return json.dumps({"class_name": self.config_class_name(), "config": self.get_config()}, **kwargs)

    def config_class_name(self):
        if self._graph is None:
            raise NotImplementedError(
                f"Model '{self.name}' is a subclassed model: its architecture is Python code, which tlkit "
                "never stores in files. Save its weights with model.save_weights(path) and rebuild the model "
                "in code before load_weights(path)."
            )
        return "Functional"


register_model_class(Model, "Functional", "Model")


def _one_or_list(tensors, model, what):
    if tensors is None:
        raise AttributeError(f"Model '{model.name}' has no {what}: it is a subclassed model without a layer graph.")
    return tensors[0] if len(tensors) == 1 else tensors


def _hdf5():
    """The model-file modules, imported on first save or load: h5py takes as long to import as the
    rest of tlkit, and most sessions never write a file."""
    from tlkit.engine.saving import hdf5
    return hdf5


def _model_files():
    from tlkit.engine.saving import model_files  # imports h5py: see _hdf5
    return model_files


def _check_h5_path(filepath):
    if os.fspath(filepath).endswith(".keras"):
        raise ValueError(f"save_weights writes HDF5 weight files: use a path ending in .weights.h5 (got {filepath}); "
                         "model.save(path) writes a whole .keras model.")
