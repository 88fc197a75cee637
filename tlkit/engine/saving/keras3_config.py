"""Keras 3 model configs (the ``config.json`` of a ``.keras`` file) in the form tlkit's config
reader takes, and tlkit's functional configs in Keras 3's form.

Keras 3 wraps every object as ``{"module", "class_name", "config", "registered_name"}``, names
dtypes by a ``DTypePolicy`` object, writes inbound nodes as ``{"args": [keras tensors], "kwargs"}``
and adds arguments tlkit's layers don't have (``kernel_constraint``, ``quantization_config``...).
Such an argument is dropped only when it is left off (None, False, empty); any other value stays
and the layer refuses it with its own message, so nothing is silently changed.
"""
import inspect

from tlkit.engine import registry
from tlkit.engine.saving.config import tensor_specs
from tlkit.utils.registration import with_registered

_ENVELOPE_KEYS = ("module", "build_config", "compile_config", "shared_object_id")
_MODEL_CLASSES = ("Functional", "Model", "Sequential")
# Keras 3 options that do nothing while another is False (BatchNormalization's batch renormalization).
_INERT_UNLESS = {"renorm_momentum": "renorm", "renorm_clipping": "renorm"}
# Where Keras 3 finds the classes it writes (module, registered name), so it can read tlkit's files.
_KERAS3_MODULES = {"Functional": ("keras.src.models.functional", "Functional"), "Sequential": ("keras", None)}
# Config keys holding a wrapper's inner layer (Bidirectional, TimeDistributed) -> the wrapper's attribute.
_WRAPPED_LAYERS = {"layer": "layer", "backward_layer": "backward_layer"}


def from_keras3(entry, custom_objects=None):
    """One Keras 3 (or tlkit) serialized layer or model, in tlkit's form; tlkit's own configs pass unchanged."""
    if not isinstance(entry, dict) or "class_name" not in entry:
        return entry
    out = {k: v for k, v in entry.items() if k not in _ENVELOPE_KEYS}
    config = dict(out.get("config") or {})
    class_name = out["class_name"]
    if class_name in _MODEL_CLASSES:
        config.pop("dtype", None)
        config["layers"] = [from_keras3(layer, custom_objects) for layer in config.get("layers", [])]
        for key in ("input_layers", "output_layers"):
            if key in config:
                config[key] = _tensor_refs(config[key])
    else:
        classes = registry.config_classes()
        classes.update(with_registered(custom_objects))
        config = _layer_config(config, classes.get(class_name), custom_objects)
    out["config"] = config
    if "inbound_nodes" in out:
        out["inbound_nodes"] = [_inbound_node(node) for node in out["inbound_nodes"]]
    return out


def _layer_config(config, cls, custom_objects):
    accepted = _accepted_arguments(cls)
    out = {}
    for key, value in config.items():
        if key in ("layer", "backward_layer") and isinstance(value, dict):
            value = from_keras3(value, custom_objects)
        elif isinstance(value, dict) and "class_name" in value:
            value = _plain_object(value)
        if accepted is not None and key not in accepted and (value in (None, False, {}, []) or
                                                             config.get(_INERT_UNLESS.get(key)) is False):
            continue  # a Keras 3 option left off (or idle), which tlkit's layer doesn't have
        out[key] = value
    return out


def _plain_object(value):
    """A nested Keras 3 object (dtype policy, initializer, regularizer) as tlkit's configs name it."""
    if value["class_name"].endswith("DTypePolicy"):
        return (value.get("config") or {}).get("name", "float32")
    inner = value.get("config")
    if isinstance(inner, dict):
        inner = {k: _plain_object(v) if isinstance(v, dict) and "class_name" in v else v for k, v in inner.items()
                 if not (k in ("input_axes", "output_axes") and v is None)}  # Keras 3.10+ initializer options
    return {"class_name": value["class_name"], "config": inner}


def _accepted_arguments(cls):
    """The keyword arguments ``cls(...)`` takes by name, through its base classes; None if unknown."""
    if cls is None:
        return None
    names = set()
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            names.update(p.name for p in inspect.signature(init).parameters.values()
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        except (TypeError, ValueError):
            return None
    return names


def _keras_tensor_ref(value):
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
        if isinstance(history, list) and len(history) == 3:
            return list(history)
        raise ValueError(f"a Keras tensor in the config has no valid keras_history: {str(value)[:200]}")
    return None


def _inbound_node(node):
    """``{"args": [...], "kwargs": {...}}`` -> tlkit's ``[[layer, node, tensor, {}], ..., {"list_input": True}?]``."""
    if not isinstance(node, dict):
        return node  # already tlkit's / Keras 2's list form
    args = node.get("args") or []
    first = args[0] if args else None
    tensors = first if isinstance(first, (list, tuple)) else args
    refs = [_keras_tensor_ref(t) for t in tensors]
    if not refs or any(r is None for r in refs):
        raise ValueError(f"a layer call in the config takes inputs tlkit can't rebuild: {str(node)[:200]}")
    if any(_keras_tensor_ref(v) is not None for v in (node.get("kwargs") or {}).values()):
        raise ValueError("a layer call in the config passes tensors by keyword (a mask or initial state), which "
                         "tlkit's model files can't express yet")
    return [r + [{}] for r in refs] + ([{"list_input": True}] if isinstance(first, (list, tuple)) else [])


def _tensor_refs(refs):
    """Keras 3 writes a single input/output as one ``[name, node, tensor]`` triple; tlkit lists them."""
    if isinstance(refs, dict):  # Keras 3 dict inputs: {"name": [layer, node, tensor]}
        refs = list(refs.values())
    if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str):
        return [refs]
    return refs


def to_keras3(entry, layer):
    """tlkit's serialized ``layer`` (a model) in Keras 3's form: inbound nodes as keras tensors with their
    shapes, nested models likewise, each object with the module Keras 3 finds it in."""
    module, registered = _KERAS3_MODULES.get(entry.get("class_name"), ("keras.layers", None))
    out = {"module": module, **entry, "registered_name": entry.get("registered_name", registered)}
    config = dict(entry.get("config") or {})
    if entry.get("class_name") in _MODEL_CLASSES:
        specs = tensor_specs(layer) if getattr(layer, "_graph", None) is not None else {}
        by_name = {sub.name: sub for sub in layer.layers}
        config["layers"] = [_keras3_layer(sub, by_name.get(sub.get("name") or sub["config"].get("name")), specs)
                            for sub in config.get("layers", [])]
    for key, attribute in _WRAPPED_LAYERS.items():  # a wrapper's inner layer gets its envelope too
        if isinstance(config.get(key), dict) and "class_name" in config[key]:
            config[key] = to_keras3(config[key], getattr(layer, attribute, None))
    out["config"] = config
    return out


def _keras3_layer(entry, layer, specs):
    out = to_keras3(entry, layer)
    if "inbound_nodes" in entry:
        out["inbound_nodes"] = [_keras3_node(node, specs) for node in entry["inbound_nodes"]]
    return out


def _keras3_node(node, specs):
    list_input = bool(node) and isinstance(node[-1], dict) and node[-1].get("list_input")
    tensors = []
    for ref in node:
        if isinstance(ref, (list, tuple)):
            shape, dtype = specs.get(tuple(ref[:3]), (None, "float32"))
            tensors.append({"class_name": "__keras_tensor__",
                            "config": {"shape": shape, "dtype": dtype, "keras_history": list(ref[:3])}})
    return {"args": [tensors] if list_input or len(tensors) > 1 else tensors, "kwargs": {}}


def compile_config_to_keras3(training):
    """tlkit's compile arguments with the module Keras 3 finds each object in (optimizer, losses, metrics)."""
    def tag(spec, module):
        if isinstance(spec, dict) and "class_name" in spec:
            return {"module": module, **spec, "registered_name": None}
        if isinstance(spec, dict):
            return {k: tag(v, module) for k, v in spec.items()}
        if isinstance(spec, list):
            return [tag(v, module) for v in spec]
        return spec

    return {**training, "optimizer": tag(training.get("optimizer"), "keras.optimizers"),
            "loss": tag(training.get("loss"), "keras.losses"), "metrics": tag(training.get("metrics"), "keras.metrics")}
