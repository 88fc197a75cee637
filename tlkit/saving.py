"""``tlkit.saving``: Keras 3's saving namespace (model files, the registry of custom objects, and the
serialization of any Keras object)."""
from tlkit.engine.saving.model_files import load_model, save_model  # noqa: F401
from tlkit.engine.saving.objects import deserialize_keras_object, serialize_keras_object  # noqa: F401
from tlkit.utils.registration import (CustomObjectScope, custom_object_scope, get_custom_objects,  # noqa: F401
                                      get_registered_objects, register_keras_serializable)
