"""``register_keras_serializable``: classes and functions a model file may name without custom_objects.

The registry only maps names to objects the program itself defined and registered; reading a file
looks names up here and never imports or runs anything the file names."""
_REGISTERED = {}


def register_keras_serializable(package="Custom", name=None):
    """Decorator, as Keras's: the object is found by ``"package>name"`` and by its own name."""

    def decorate(obj):
        key = name or getattr(obj, "__name__", None)
        if not key:
            raise ValueError("register_keras_serializable needs a name for an object without __name__.")
        _REGISTERED[f"{package}>{key}"] = obj
        _REGISTERED[key] = obj
        return obj

    return decorate


def get_registered_objects():
    """{name: object} of every registration (a copy)."""
    return dict(_REGISTERED)


def with_registered(custom_objects):
    """The registered objects, overridden by the caller's ``custom_objects``."""
    return {**_REGISTERED, **(custom_objects or {})}
