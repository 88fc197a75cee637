"""``model.save`` / ``load_model``: the file format from the path (``.keras`` -> Keras 3's zip, anything
else -> HDF5) and, on reading, from the file's first bytes, so a renamed file still loads."""
import os
import warnings

from tlkit.engine.saving import hdf5, keras_zip


def save_model(model, filepath, overwrite=True, include_optimizer=True, metadata=None):
    path = os.fspath(filepath)
    if path.endswith(".weights.h5"):
        raise ValueError(f"model.save({path!r}) writes a whole model: use a name ending in .keras or .h5, or "
                         "model.save_weights(path) for the weights alone.")
    if not path.endswith((".keras", ".h5", ".hdf5")):
        warnings.warn(f"model.save({path!r}): a name without .keras or .h5 gets an HDF5 file (Keras 2's layout); "
                      "name it .keras for Keras 3's zip.", UserWarning, stacklevel=3)
    writer = keras_zip.save_model if path.endswith(".keras") else hdf5.save_model
    writer(model, path, overwrite=overwrite, include_optimizer=include_optimizer, metadata=metadata)


def load_model(filepath, custom_objects=None, compile=True):
    """The model saved by ``model.save(filepath)`` (tlkit or Keras: .keras, .h5), compiled as it was."""
    path = os.fspath(filepath)
    if os.path.isfile(path) and keras_zip.is_keras_zip(path):
        return keras_zip.load_model(path, custom_objects=custom_objects, compile=compile)
    return hdf5.load_model(path, custom_objects=custom_objects, compile=compile)


def load_weights(model, filepath, by_name=False, skip_mismatch=False):
    """Weights from a ``.keras`` zip, or from an HDF5 weight or model file (Keras 2 or 3 layout)."""
    path = os.fspath(filepath)
    if os.path.isfile(path) and keras_zip.is_keras_zip(path):
        return keras_zip.load_weights(model, path, by_name=by_name, skip_mismatch=skip_mismatch)
    return hdf5.load_weights(model, path, by_name=by_name, skip_mismatch=skip_mismatch)
