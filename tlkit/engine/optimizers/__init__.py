"""Optimizers with Keras 3's names, defaults and update rules.

>>> from tlkit.engine import optimizers
>>> optimizers.get("adam")                                   # by name (case-insensitive), like Keras
>>> optimizers.get({"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}})
>>> optimizers.deserialize(optimizers.serialize(opt))        # same configuration, fresh state
"""
from tlkit.engine.optimizers import schedules
from tlkit.engine.optimizers.adadelta import Adadelta
from tlkit.engine.optimizers.adagrad import Adagrad
from tlkit.engine.optimizers.adam import Adam
from tlkit.engine.optimizers.adamax import Adamax
from tlkit.engine.optimizers.adamw import AdamW
from tlkit.engine.optimizers.ftrl import Ftrl
from tlkit.engine.optimizers.lion import Lion
from tlkit.engine.optimizers.nadam import Nadam
from tlkit.engine.optimizers.optimizer import Optimizer
from tlkit.engine.optimizers.rmsprop import RMSprop
from tlkit.engine.optimizers.sgd import SGD

_BY_LOWER_NAME = {cls.__name__.lower(): cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, Nadam,
                                                        Ftrl, Lion)}


def serialize(optimizer):
    """``{"class_name": "Adam", "config": {...}}`` -- JSON-able (a schedule is nested the same way)."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config, custom_objects=None):
    """A new optimizer from :func:`serialize` output; class names match case-insensitively."""
    name = config.get("class_name") if isinstance(config, dict) else None
    custom_objects = custom_objects or {}
    cls = custom_objects.get(name) or _BY_LOWER_NAME.get(str(name).lower())
    if cls is None:
        raise ValueError(
            f"Unknown optimizer {name!r}. tlkit has {sorted(c.__name__ for c in _BY_LOWER_NAME.values())}; "
            "pass your own classes with custom_objects={'MyOptimizer': MyOptimizer}."
        )
    return cls.from_config(config.get("config", {}), custom_objects=custom_objects)


def get(identifier):
    """An optimizer from a name ("adam", "SGD"), a serialized dict, or an instance (returned as is)."""
    if identifier is None:
        return None
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return deserialize({"class_name": identifier, "config": {}})
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}")


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Ftrl", "Lion",
           "schedules", "get", "serialize",
           "deserialize"]
