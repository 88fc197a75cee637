"""``keras.saving.serialize_keras_object`` / ``deserialize_keras_object``: any Keras object (layer, model,
regularizer, initializer, loss, metric, optimizer, registered function) as a JSON-able dict, and back.
A dict names a class from tlkit's own tables or the registry; nothing a config says is imported or run."""
from tlkit.engine import initializers, losses, metrics, optimizers, regularizers
from tlkit.engine.saving.config import deserialize_layer, serialize_layer
from tlkit.utils.registration import registered_name, with_registered

# What each kind of object's module is called in Keras 3's serialized form, and how tlkit rebuilds it.
_KINDS = (("keras.regularizers", regularizers.get), ("keras.initializers", initializers.get),
          ("keras.losses", losses.deserialize), ("keras.metrics", metrics.deserialize),
          ("keras.optimizers", optimizers.deserialize))


def serialize_keras_object(obj):
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(v) for v in obj]
    if isinstance(obj, dict):
        return {k: serialize_keras_object(v) for k, v in obj.items()}
    if hasattr(obj, "config_class_name"):
        return {"module": "keras.layers", **serialize_layer(obj)}
    name = registered_name(type(obj) if hasattr(obj, "get_config") else obj)
    registered = name if name and ">" in name else None
    if hasattr(obj, "get_config"):
        return {"module": _module_of(obj), "class_name": type(obj).__name__,
                "config": serialize_keras_object(obj.get_config()), "registered_name": registered}
    if callable(obj):
        return {"module": None if registered else "builtins", "class_name": "function",
                "config": getattr(obj, "__name__", str(obj)), "registered_name": registered}
    raise TypeError(f"serialize_keras_object: can't serialize {type(obj).__name__} {obj!r}.")


def _module_of(obj):
    for module, _ in _KINDS:
        kind = module.split(".")[1]
        if kind in type(obj).__module__:
            return module
    return None


def deserialize_keras_object(config, custom_objects=None):
    if not isinstance(config, dict):
        return with_registered(custom_objects).get(config, config) if isinstance(config, str) else config
    objects = with_registered(custom_objects)
    key = config.get("registered_name") if config.get("registered_name") in objects else config.get("class_name")
    if config.get("class_name") == "function":
        name = config.get("registered_name") or config.get("config")
        if name not in objects:
            raise ValueError(f"Unknown function {name!r}: register it with register_keras_serializable or pass "
                             f"custom_objects={{{name!r}: fn}}.")
        return objects[name]
    plain = {"class_name": key, "config": config.get("config") or {}}
    if key in objects and hasattr(objects[key], "from_config"):
        return objects[key].from_config(plain["config"])
    module = config.get("module") or ""
    for kind, rebuild in _KINDS:
        if module.startswith(kind):
            return rebuild(plain) if rebuild in (regularizers.get, initializers.get) else rebuild(plain, objects)
    return deserialize_layer(plain, custom_objects)
