"""model.save / load_model / save_weights / load_weights in HDF5 (Keras 2 layout + tlkit attrs).

A model file holds the architecture as JSON config (data, never code), the weights, the
compile arguments and the optimizer state, so training continues exactly after loading.
Every write goes to a temporary file renamed into place.
"""
import contextlib
import json
import os

import h5py
import numpy as np

from tlkit.engine import optimizers
from tlkit.utils import random
from tlkit.engine.layer import skip_initializers
from tlkit.engine.saving.config import deserialize_layer, serialize_layer
from tlkit.engine.saving.legacy_h5 import model_layer_weights, read_layer_weights, write_layer_weights
from tlkit.utils.io import atomic_h5_file
from tlkit.version import __version__


class ModelFileError(ValueError):
    """A file that is not a readable tlkit/Keras model or weight file."""


# What h5py and a malformed config raise from inside a damaged file: never shown raw to a user.
_LOW_LEVEL_ERRORS = (KeyError, OSError, RuntimeError, TypeError, IndexError, AttributeError, UnicodeDecodeError,
                     OverflowError, ValueError)


@contextlib.contextmanager
def _reading(filepath, what="model"):
    try:
        yield
    except (ModelFileError, FileNotFoundError):
        raise
    except _LOW_LEVEL_ERRORS as e:
        detail = f"{type(e).__name__}: {e}"
        raise ModelFileError(
            f"{filepath} is not a readable tlkit/Keras {what} file ({detail}). It may be damaged or truncated: "
            "save or copy it again.") from None


def save_model(model, filepath, overwrite=True, include_optimizer=True, metadata=None):
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    config = serialize_layer(model)
    with atomic_h5_file(filepath) as f:  # built in memory: a full disk can't crash libhdf5
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tlkit"
        f.attrs["tlkit_version"] = __version__
        f.attrs["model_config"] = json.dumps(config)
        if metadata is not None:
            f.attrs["tlkit_metadata"] = json.dumps(metadata)
        if model.compiled and model._compile_config is not None:
            f.attrs["training_config"] = json.dumps(model._compile_config)
        write_layer_weights(f.create_group("model_weights"), model_layer_weights(model))
        if include_optimizer and model.optimizer is not None and hasattr(model.optimizer, "get_state"):
            state = model.optimizer.get_state()
            g = f.create_group("optimizer_weights")
            for key, value in state.items():
                g.create_dataset(key, data=np.asarray(value))
            g.attrs["weight_names"] = np.array([k.encode("utf8") for k in state])


def _open(filepath):
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No file at {filepath}.")
    try:
        return h5py.File(filepath, "r")
    except OSError as e:
        raise ModelFileError(
            f"{filepath} is not a readable HDF5 file ({e}). tlkit reads .h5 files written by tlkit or Keras 2; "
            "if the file was copied or downloaded, it may be truncated: copy it again."
        ) from None


def load_model(filepath, custom_objects=None, compile=True):
    """The model saved by ``model.save(filepath)``, compiled as it was (optimizer state too)."""
    with _open(filepath) as f, _reading(filepath):
        if "model_config" not in f.attrs:
            raise ModelFileError(
                f"{filepath} holds no model architecture (no 'model_config'): it is a weights-only file. Build "
                "the model in code (or with tlkit.zoo) and call model.load_weights(path)."
            )
        try:
            config = json.loads(_text(f.attrs["model_config"]))
        except (ValueError, TypeError) as e:
            raise ModelFileError(f"{filepath}: the model config is not valid JSON ({e}).") from None
        # The weights come from the file: don't draw initial values (slow for big models, and it would
        # move the global RNG, so a saved-loaded-resumed run would differ from one run straight).
        rng_state = random.get_state()
        try:
            with skip_initializers():
                model = deserialize_layer(config, custom_objects)
        except (ValueError, KeyError, TypeError, MemoryError) as e:
            raise ModelFileError(f"{filepath}: its model config can't be used: {e}") from None
        finally:
            random.set_state(rng_state)
        model.metadata = json.loads(_text(f.attrs["tlkit_metadata"])) if "tlkit_metadata" in f.attrs else {}
        weights_group = f["model_weights"] if "model_weights" in f else f
        _assign_by_order(model, read_layer_weights(weights_group, filepath), filepath)
        if compile and "training_config" in f.attrs:
            training = json.loads(_text(f.attrs["training_config"]))
            model.compile(optimizer=optimizers.get(training["optimizer"]), loss=training.get("loss"),
                          metrics=training.get("metrics"), loss_weights=training.get("loss_weights"))
            if "optimizer_weights" in f:
                g = f["optimizer_weights"]
                model.optimizer.set_state({k: np.asarray(g[k][()]) for k in _decode(g.attrs["weight_names"])})
    return model


def save_weights(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    with atomic_h5_file(filepath) as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tlkit"
        f.attrs["tlkit_version"] = __version__
        write_layer_weights(f, model_layer_weights(model))


def load_weights(model, filepath, by_name=False, skip_mismatch=False):
    """Weights from a tlkit/Keras 2 HDF5 file (weights-only or full model), by layer order or by name."""
    with _open(filepath) as f, _reading(filepath, "weight"):
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            from tlkit.zoo.weights import read_weight_file  # Keras 3 .weights.h5 and other layouts
            stored = list(read_weight_file(filepath).layers.items())
        else:
            stored = read_layer_weights(group, filepath)
    if by_name:
        _assign_by_name(model, stored, skip_mismatch, filepath)
    else:
        _assign_by_order(model, stored, filepath, skip_mismatch)


def _with_weights(layers):
    return [layer for layer in layers if layer.weights]


def _assign_by_order(model, stored, filepath, skip_mismatch=False):
    layers = _with_weights(model.layers)
    stored = [(name, arrays) for name, arrays in stored if arrays]
    if len(layers) != len(stored):
        raise ModelFileError(
            f"{filepath} has weights for {len(stored)} layers but model '{model.name}' has {len(layers)} layers "
            "with weights. Is it the file of a different architecture? Use load_weights(path, by_name=True) to "
            "match layers by name."
        )
    for layer, (name, arrays) in zip(layers, stored):
        _set_layer(layer, name, arrays, filepath, skip_mismatch)


def _assign_by_name(model, stored, skip_mismatch, filepath):
    stored = dict(stored)
    for layer in _with_weights(model.layers):
        if layer.name in stored:
            _set_layer(layer, layer.name, stored[layer.name], filepath, skip_mismatch)


def _set_layer(layer, stored_name, arrays, filepath, skip_mismatch):
    shapes = [v.shape for v in layer.weights]
    got = [tuple(a.shape) for a in arrays]
    if shapes != got:
        if skip_mismatch:
            return
        raise ModelFileError(
            f"Layer '{layer.name}' expects weights of shapes {shapes}, but {filepath} has {got} for layer "
            f"'{stored_name}'. The file belongs to a different architecture (or pass skip_mismatch=True with "
            "by_name=True to skip such layers)."
        )
    layer.set_weights(arrays)


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _decode(names):
    return [_text(n) for n in names]
