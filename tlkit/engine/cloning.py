"""``models.clone_model``: the same architecture with new layers (fresh weights), as Keras's."""
from tlkit.engine import registry
from tlkit.engine.layers.input_layer import Input, InputLayer
from tlkit.engine.symbolic import flatten


def _fresh_copy(layer):
    return layer.__class__.from_config(layer.get_config())


def clone_model(model, input_tensors=None, clone_function=None):
    """A new model wired as ``model``, each layer replaced by ``clone_function(layer)`` (default: a new layer
    from the layer's config, so with newly initialized weights). ``input_tensors`` replace its Inputs."""
    clone_function = clone_function or _fresh_copy
    if getattr(model, "_graph", None) is None and not hasattr(model, "_stack"):
        raise ValueError(f"clone_model needs a Sequential or Functional model; '{model.name}' is a subclassed "
                         "model: build a new instance of its class instead.")
    if hasattr(model, "_stack"):  # Sequential
        return _clone_sequential(model, input_tensors, clone_function)
    return _clone_functional(model, input_tensors, clone_function)


def _clone_sequential(model, input_tensors, clone_function):
    layers = [clone_function(layer) for layer in model.layers]
    if input_tensors is None:
        head = [] if model._input_layer is None else \
            [Input(batch_shape=model._input_layer.batch_shape, name=model._input_layer.name)]
        return registry.model_class("Sequential")(head + layers, name=model.name)
    inputs = flatten(input_tensors)[0]
    out = inputs
    for layer in layers:
        out = layer(out)
    return registry.model_class("Functional")(inputs, out, name=model.name)


def _clone_functional(model, input_tensors, clone_function):
    graph = model._graph
    new_inputs = flatten(input_tensors) if input_tensors is not None else \
        [Input(batch_shape=t.node.layer.batch_shape, name=t.node.layer.name) for t in graph.inputs]
    if len(new_inputs) != len(graph.inputs):
        raise ValueError(f"clone_model: model '{model.name}' has {len(graph.inputs)} input(s), "
                         f"but input_tensors has {len(new_inputs)}.")
    tensors = {id(old): new for old, new in zip(graph.inputs, new_inputs)}
    clones = {}
    for node in graph.nodes:
        layer = node.layer
        if isinstance(layer, InputLayer):
            continue
        if id(layer) not in clones:
            clones[id(layer)] = clone_function(layer)
        args = [tensors[id(t)] for t in node.inputs]
        outs = clones[id(layer)](args if node.input_structure else args[0], **node.kwargs)
        for old, new in zip(node.outputs, flatten(outs)):
            tensors[id(old)] = new
    outputs = [tensors[id(t)] for t in graph.outputs]
    return registry.model_class("Functional")(new_inputs if len(new_inputs) > 1 else new_inputs[0],
                                              outputs if len(outputs) > 1 else outputs[0], name=model.name)
