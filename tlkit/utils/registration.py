"""``register_keras_serializable``, ``custom_object_scope`` and ``get_custom_objects``: the classes and
functions a model file or config may name without passing custom_objects.

The registry only maps names to objects the program itself defined and registered; reading a file
looks names up here and never imports or runs anything the file names."""
import contextlib

_REGISTERED = {}
_SCOPES = []  # the custom_objects of the enclosing custom_object_scope blocks, innermost last


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


def get_custom_objects():
    """The registry itself (as Keras's: ``get_custom_objects().clear()`` forgets every registration)."""
    return _REGISTERED


def get_registered_objects():
    """{name: object} of every registration (a copy)."""
    return dict(_REGISTERED)


@contextlib.contextmanager
def custom_object_scope(*scopes):
    """``with custom_object_scope({"MyLayer": MyLayer}): load_model(...)``: the names resolve inside the block."""
    merged = {}
    for scope in scopes:
        merged.update(scope or {})
    _SCOPES.append(merged)
    try:
        yield merged
    finally:
        _SCOPES.pop()


CustomObjectScope = custom_object_scope


def with_registered(custom_objects=None):
    """The registered objects, then the enclosing scopes', then the caller's ``custom_objects`` (later wins)."""
    merged = dict(_REGISTERED)
    for scope in _SCOPES:
        merged.update(scope)
    merged.update(custom_objects or {})
    return merged


def registered_name(obj):
    """The name a config gives a registered object (``"package>name"``), else its ``__name__``."""
    for key, value in _REGISTERED.items():
        if value is obj and ">" in key:
            return key
    return getattr(obj, "__name__", None)
