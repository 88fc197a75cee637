"""The classes a model config may name: every built-in layer (by its Keras names and aliases) and
the model classes, which register themselves here as their modules load (``tlkit`` imports both
Model and Sequential, so they are registered before any file can be read). A config is data: it
can name only these classes, plus the caller's custom_objects, and never runs code."""
from tlkit.engine import layers

_MODEL_CLASSES = {}


def register_model_class(cls, *names):
    """Let configs name ``cls`` as each of ``names`` (Model: "Functional" and "Model")."""
    for name in names:
        _MODEL_CLASSES[name] = cls
    return cls


def model_class(name):
    return _MODEL_CLASSES[name]


def config_classes():
    """{class name in a config: class}, a fresh dict the caller may extend."""
    classes = {name: getattr(layers, name) for name in layers.__all__ if name not in ("Input", "Layer")}
    classes.update(_MODEL_CLASSES)
    return classes
