"""Model architecture as JSON-able config, and back. A config is data: it names layer
classes from a fixed registry (plus the caller's custom_objects) and is never evaluated."""
import json

from tlkit.engine import registry
from tlkit.engine.layers.input_layer import InputLayer
from tlkit.utils.registration import custom_object_scope, registered_name, with_registered


def serialize_layer(layer):
    """``{"class_name", "config"}`` (+ ``registered_name`` for a registered class); layers and Keras objects
    inside the config (a custom layer's sub-layer, a regularizer) become their own serialized dicts."""
    entry = {"class_name": layer.config_class_name(), "config": _serialize_values(layer.get_config())}
    name = registered_name(type(layer))
    if name and ">" in name:
        entry["registered_name"] = name
    return entry


def _serialize_values(value):
    if isinstance(value, dict):
        return {k: _serialize_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_serialize_values(v) for v in value)
    if hasattr(value, "config_class_name") and hasattr(value, "get_config"):
        return serialize_layer(value)
    if hasattr(value, "get_config") and not isinstance(value, type):
        return {"class_name": type(value).__name__, "config": _serialize_values(value.get_config())}
    return value


def _node_indices(graph):
    """{id(node): its index among its layer's calls in the graph}, as configs number a layer's nodes."""
    nodes = [t.node for t in graph.inputs] + graph.nodes
    return {id(node): [n for n in nodes if n.layer is node.layer].index(node) for node in nodes}


def tensor_specs(model):
    """{(layer name, node index, tensor index): (shape, dtype)} of every tensor in a functional model."""
    node_index = _node_indices(model._graph)
    return {(t.node.layer.name, node_index[id(t.node)], t.index): (list(t.shape), t.dtype)
            for node in [t.node for t in model._graph.inputs] + model._graph.nodes for t in node.outputs}


def functional_config(model):
    graph = model._graph
    node_index = _node_indices(graph)
    layers = []
    for layer in graph.layers:
        entry = serialize_layer(layer)
        entry["name"] = layer.name
        inbound = []
        for node in graph.nodes:
            if node.layer is layer:
                inbound.append([[t.node.layer.name, node_index[id(t.node)], t.index, {}] for t in node.inputs]
                               + ([{"list_input": True}] if node.input_structure else []))
        entry["inbound_nodes"] = inbound
        layers.append(entry)
    ref = lambda t: [t.node.layer.name, node_index[id(t.node)], t.index]
    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": [ref(t) for t in graph.inputs], "output_layers": [ref(t) for t in graph.outputs]}


def sequential_config(model):
    layers = []
    if model._input_layer is not None:
        layers.append({"class_name": "InputLayer", "config": model._input_layer.get_config()})
    layers += [serialize_layer(layer) for layer in model.layers]
    return {"name": model.name, "trainable": model.trainable, "layers": layers}


def deserialize_layer(entry, custom_objects=None):
    """The layer or model a serialized entry describes; ``custom_objects`` also resolve names the layers look
    up themselves while being built (a custom activation function named in a Dense config)."""
    with custom_object_scope(custom_objects):
        return _deserialize_layer(entry, custom_objects)


def _deserialize_layer(entry, custom_objects):
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise ValueError(f"Bad layer entry in model config: {str(entry)[:200]}")
    classes = registry.config_classes()
    classes.update(with_registered(custom_objects))
    class_name = entry["registered_name"] if entry.get("registered_name") in classes else entry["class_name"]
    cls = classes.get(class_name)
    if cls is None:
        raise ValueError(
            f"Unknown layer: '{class_name}'. The model file names a layer class tlkit doesn't know. If it is "
            "your own layer, pass it to load_model(path, custom_objects={'" + str(class_name) + "': YourLayer})."
        )
    config = dict(entry.get("config") or {})
    if class_name in ("Functional", "Model"):
        return functional_from_config(config, custom_objects)
    if class_name == "Sequential":
        return sequential_from_config(config, custom_objects)
    if class_name == "InputLayer":
        config.pop("sparse", None)
        config.pop("ragged", None)
        config.pop("optional", None)  # Keras 3.6+: whether the input may be None
    for key in ("layer", "backward_layer"):  # wrappers (Bidirectional, TimeDistributed) hold a layer config
        if isinstance(config.get(key), dict) and "class_name" in config[key]:
            config[key] = deserialize_layer(config[key], custom_objects)
    try:
        return cls.from_config(config)
    except TypeError as e:
        raise ValueError(f"Layer '{class_name}' in the model file has an invalid config: {e}") from None


def model_from_json(json_string, custom_objects=None):
    """The model ``model.to_json()`` describes (new weights), as Keras's ``models.model_from_json``."""
    try:
        entry = json.loads(json_string)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model_from_json needs the JSON text of model.to_json() ({e}).") from None
    return deserialize_layer(entry, custom_objects)


def sequential_from_config(config, custom_objects=None, model_class=None):
    model = (model_class or registry.model_class("Sequential"))(name=config.get("name"))
    for entry in config.get("layers", []):
        model.add(deserialize_layer(entry, custom_objects))
    model._trainable = bool(config.get("trainable", True))  # not recursive: layers keep their own flags
    return model


def functional_from_config(config, custom_objects=None, model_class=None):
    created, outputs_of = {}, {}
    pending = []
    for entry in config.get("layers", []):
        layer = deserialize_layer(entry, custom_objects)
        name = entry.get("name", layer.name)
        created[name] = layer
        if isinstance(layer, InputLayer):
            outputs_of[(name, 0)] = [layer.output]
        for inbound in entry.get("inbound_nodes", []):
            pending.append((name, inbound))
    # Call layers on their inbound tensors as soon as those exist (configs may list shared layers early).
    node_counts = {}
    while pending:
        progressed = False
        for item in list(pending):
            name, inbound = item
            list_input = bool(inbound) and isinstance(inbound[-1], dict) and inbound[-1].get("list_input")
            refs = [r for r in inbound if isinstance(r, (list, tuple))]
            try:
                args = [outputs_of[(r[0], r[1])][r[2]] for r in refs]
            except KeyError:
                continue
            out = created[name](args if list_input or len(args) > 1 else args[0])
            index = node_counts.get(name, 0)
            node_counts[name] = index + 1
            outputs_of[(name, index)] = out if isinstance(out, list) else [out]
            pending.remove(item)
            progressed = True
        if not progressed:
            raise ValueError("The model config's layer graph can't be rebuilt: some layers' inputs never appear "
                             f"(stuck at {[p[0] for p in pending]}). The file may be damaged.")
    try:
        inputs = [outputs_of[(r[0], r[1])][r[2]] for r in config["input_layers"]]
        outputs = [outputs_of[(r[0], r[1])][r[2]] for r in config["output_layers"]]
    except (KeyError, IndexError, TypeError) as e:
        raise ValueError(f"The model config's inputs/outputs don't match its layers ({e}).") from None
    model = (model_class or registry.model_class("Functional"))(
        inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0], name=config.get("name"))
    model._trainable = bool(config.get("trainable", True))  # not recursive: layers keep their own flags
    return model
