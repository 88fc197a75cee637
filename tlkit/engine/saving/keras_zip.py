"""The ``.keras`` model file of Keras 3: a zip of ``config.json`` (the architecture and compile
arguments), ``model.weights.h5`` (the weights in Keras 3's layout) and ``metadata.json``.

tlkit writes the same three members (plus its optimizer state in a ``tlkit_optimizer`` group of the
weights file) in one atomic write, and reads files written by tlkit or Keras 3. Nothing is
extracted to disk and no member is trusted: only the three known names are read, each with a size
limit, and a member whose declared size is far beyond what the zip stores for it is refused before
it is read.
"""
import datetime
import io
import json
import os
import warnings
import zipfile

import h5py

from tlkit.engine.saving.compile_config import compile_from_config
from tlkit.engine.saving.config import serialize_layer
from tlkit.engine.saving.errors import ModelFileError
from tlkit.engine.saving.hdf5 import (
    assign_keras3,
    model_from_config,
    read_optimizer_state,
    reading,
    write_optimizer_state,
)
from tlkit.engine.saving.keras3_config import (
    compile_config_to_keras3,
    from_keras3,
    to_keras3,
)
from tlkit.engine.saving.keras3_h5_layout import write_keras3_layers
from tlkit.engine.saving.keras_h5_layout import read_member
from tlkit.utils.io import atomic_path
from tlkit.version import __version__

ZIP_SIGNATURE = b"PK\x03\x04"
CONFIG, WEIGHTS, METADATA = "config.json", "model.weights.h5", "metadata.json"
# JSON members are small (a 1000-layer config is a few MB); the weights member is bounded by the
# zip's own size through the expansion check.
MAX_JSON_BYTES = 64 << 20
OPTIMIZER_GROUP = "tlkit_optimizer"


def is_keras_zip(filepath):
    with open(filepath, "rb") as f:
        return f.read(4) == ZIP_SIGNATURE


def save_model(model, filepath, overwrite=True, include_optimizer=True, metadata=None):
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    config = to_keras3(serialize_layer(model), model)
    if model.compiled and model._compile_config is not None:
        config["compile_config"] = compile_config_to_keras3(model._compile_config)
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        write_keras3_layers(f, model)
        if include_optimizer:
            write_optimizer_state(f, OPTIMIZER_GROUP, model.optimizer)
    meta = {"keras_version": "3.0.0", "tlkit_version": __version__,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    if metadata is not None:
        meta["tlkit_metadata"] = metadata
    with atomic_path(filepath) as tmp, zipfile.ZipFile(tmp, "w") as z:
        z.writestr(METADATA, json.dumps(meta))
        z.writestr(CONFIG, json.dumps(config))
        z.writestr(WEIGHTS, weights.getbuffer())


def load_model(filepath, custom_objects=None, compile=True):
    """The model in a ``.keras`` file written by tlkit or Keras 3 (compiled as saved when ``compile``)."""
    filepath = os.fspath(filepath)
    with reading(filepath), _open_zip(filepath) as z:
        config = _json_member(z, CONFIG, filepath)
        meta = _json_member(z, METADATA, filepath) if METADATA in z.namelist() else {}
        weights = _member(z, WEIGHTS, filepath, limit=None)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(filepath, f"its {CONFIG} is not a serialized model", "Save the model again")
    try:
        tlkit_config = from_keras3(config, custom_objects)
    except ValueError as e:
        raise ModelFileError(f"{filepath}: its model config can't be used: {e}") from None
    model = model_from_config(tlkit_config, custom_objects, filepath)
    model.metadata = meta.get("tlkit_metadata") or {} if isinstance(meta, dict) else {}
    with reading(filepath), h5py.File(io.BytesIO(weights), "r") as f:
        assign_keras3(model, f, filepath)
        training = config.get("compile_config")
        if compile and isinstance(training, dict) and training.get("optimizer"):
            try:
                compile_from_config(model, training, custom_objects)
            except (ValueError, TypeError, KeyError) as e:
                # As Keras does: the model itself is intact, only its training setup can't be rebuilt.
                warnings.warn(f"{filepath}: the model loaded uncompiled ({e}); call model.compile(...) to train it.",
                              stacklevel=2)
                return model
            read_optimizer_state(f, OPTIMIZER_GROUP, model.optimizer, filepath)
    return model


def load_weights(model, filepath, by_name=False, skip_mismatch=False):
    """The weights of a ``.keras`` file into ``model`` (as Keras 3's ``model.load_weights("m.keras")``)."""
    filepath = os.fspath(filepath)
    with reading(filepath, "weight"), _open_zip(filepath) as z:
        weights = _member(z, WEIGHTS, filepath, limit=None)
    with reading(filepath, "weight"), h5py.File(io.BytesIO(weights), "r") as f:
        assign_keras3(model, f, filepath, by_name, skip_mismatch)


def _open_zip(filepath):
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No file at {filepath}.")
    try:
        z = zipfile.ZipFile(filepath)
    except zipfile.BadZipFile as e:
        raise ModelFileError(filepath, f"it is not a readable .keras (zip) file ({e})",
                             "Save or copy the file again") from None
    for info in z.infolist():
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or ":" in name:
            z.close()
            raise ModelFileError(filepath, f"it holds a member named {name!r}, a path outside the archive "
                                           "(a hostile file)", "Use a .keras file saved by Keras or tlkit")
    return z


def _member(z, name, filepath, limit):
    if name not in z.namelist():
        raise ModelFileError(filepath, f"it has no {name} (members: {z.namelist()[:10]})",
                             "Give a .keras file saved by Keras 3 or tlkit")
    try:
        return read_member(z, name, filepath, max_bytes=limit)
    except (zipfile.BadZipFile, EOFError, NotImplementedError) as e:
        raise ModelFileError(filepath, f"its {name} can't be read ({e})", "Save or copy the file again") from None


def _json_member(z, name, filepath):
    try:
        return json.loads(_member(z, name, filepath, MAX_JSON_BYTES).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(filepath, f"its {name} is not valid JSON ({e})", "Save or copy the file again") from None
