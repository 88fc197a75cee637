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

from tlkit.utils import random
from tlkit.engine.layer import skip_initializers
from tlkit.engine.saving.compile_config import compile_from_config
from tlkit.engine.saving.config import deserialize_layer, serialize_layer
from tlkit.engine.saving.errors import ModelFileError, UnreadableFileError
from tlkit.engine.saving.keras3_h5_layout import arrays_in_model_order, is_keras3_layout, read_keras3_layers
from tlkit.engine.saving.keras_h5_layout import (check_dataset, decode_text, has_attr_list, read_checked,
                                                 read_json_object_attr, read_layer_weights, string_list_attr,
                                                 write_json_attr, write_layer_weights)
from tlkit.utils.io import atomic_h5_file
from tlkit.version import __version__


# What h5py and a malformed config raise from inside a damaged file: never shown raw to a user.
_LOW_LEVEL_ERRORS = (KeyError, OSError, RuntimeError, TypeError, IndexError, AttributeError, UnicodeDecodeError,
                     OverflowError, ValueError)


@contextlib.contextmanager
def reading(filepath, what="model"):
    try:
        yield
    except (ModelFileError, FileNotFoundError):
        raise
    except UnreadableFileError as e:  # the shared layout reader's refusals, already one clear line
        raise ModelFileError(str(e)) from None
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
            write_json_attr(f, "tlkit_metadata", metadata)
        if model.compiled and model._compile_config is not None:
            f.attrs["training_config"] = json.dumps(model._compile_config)
        write_layer_weights(f.create_group("model_weights"), model_layer_weights(model))
        if include_optimizer:
            write_optimizer_state(f, "optimizer_weights", model.optimizer)


def write_optimizer_state(f, group_name, optimizer):
    """The optimizer's resumable state as datasets of ``f[group_name]``, named in a ``weight_names`` list."""
    if optimizer is None or not hasattr(optimizer, "get_state"):
        return
    state = optimizer.get_state()
    g = f.create_group(group_name)
    for key, value in state.items():
        g.create_dataset(key, data=np.asarray(value))
    g.attrs["weight_names"] = np.array([k.encode("utf8") for k in state])


def read_optimizer_state(f, group_name, optimizer, filepath):
    if group_name not in f or optimizer is None:
        return
    g = f[group_name]
    names = string_list_attr(g, "weight_names", filepath, owner=f"'{group_name}'")
    datasets = {k: check_dataset(g, k, filepath, f"optimizer state '{k}'") for k in names}
    optimizer.set_state({k: read_checked(ds, float32=False) for k, ds in datasets.items()})


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
    with _open(filepath) as f, reading(filepath):
        if "model_config" not in f.attrs:
            raise ModelFileError(
                f"{filepath} holds no model architecture (no 'model_config'): it is a weights-only file. Build "
                "the model in code (or with tlkit.zoo) and call model.load_weights(path)."
            )
        try:
            config = json.loads(decode_text(f.attrs["model_config"]))
        except (ValueError, TypeError) as e:
            raise ModelFileError(f"{filepath}: the model config is not valid JSON ({e}).") from None
        model = model_from_config(config, custom_objects, filepath)
        model.metadata = read_json_object_attr(f, "tlkit_metadata", filepath) or {}
        weights_group = f["model_weights"] if "model_weights" in f else f
        _assign(model, weights_group, filepath)
        if compile and "training_config" in f.attrs:
            compile_from_config(model, json.loads(decode_text(f.attrs["training_config"])), custom_objects)
            read_optimizer_state(f, "optimizer_weights", model.optimizer, filepath)
    return model


def model_from_config(config, custom_objects, filepath):
    """The model a file's config describes, its weights not initialised (the file holds them)."""
    # Drawing initial values would be slow for big models, and it would move the global RNG, so a
    # saved-loaded-resumed run would differ from one run straight.
    rng_state = random.get_state()
    try:
        with skip_initializers():
            return deserialize_layer(config, custom_objects)
    except (ValueError, KeyError, TypeError, MemoryError) as e:
        raise ModelFileError(f"{filepath}: its model config can't be used: {e}") from None
    finally:
        random.set_state(rng_state)


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
    """Weights from a tlkit/Keras HDF5 file (weights-only or full model, Keras 2 or Keras 3 layout), by
    layer order or by name. Shapes are compared with the model's before any array is read."""
    with _open(filepath) as f, reading(filepath, "weight"):
        group = f["model_weights"] if "model_weights" in f else f
        if has_attr_list(group, "layer_names"):
            _assign(model, group, filepath, by_name, skip_mismatch)
            return
        if not is_keras3_layout(f):
            raise ModelFileError(filepath, "it has no 'layer_names' attribute and no Keras 3 'layers' group: it is "
                                           "not a Keras/tlkit weight file", "Give a file written by save_weights")
        assign_keras3(model, f, filepath, by_name, skip_mismatch)


def assign_keras3(model, root, filepath, by_name=False, skip_mismatch=False):
    """Read the Keras 3 layout under ``root`` into ``model``, refusing mismatched shapes before setting any."""
    entries, paths = read_keras3_layers(root, filepath)
    stored = [(name, arrays) for name, _, arrays in entries]
    if not by_name:
        stored = arrays_in_model_order(model.layers, paths, stored) or stored
    _match(model, [(name, [a.shape for a in arrays]) for name, arrays in stored], filepath, by_name, skip_mismatch)
    _set(model, stored, filepath, by_name, skip_mismatch)


def _assign(model, group, filepath, by_name=False, skip_mismatch=False):
    """Read the Keras 2 tree in ``group`` into ``model``, refusing mismatched shapes before reading."""
    stored = read_layer_weights(group, filepath,
                                check=lambda declared: _match(model, declared, filepath, by_name, skip_mismatch))
    _set(model, [(name, arrays) for name, _, arrays in stored], filepath, by_name, skip_mismatch)


def _match(model, declared, filepath, by_name, skip_mismatch):
    """[(layer, stored name, index in ``declared``)] for the layers to set; raises ModelFileError on a
    mismatch (unless ``skip_mismatch``). ``declared``: [(stored layer name, [shape, ...])]."""
    layers = [layer for layer in model.layers if layer.weights]
    if by_name:
        index = {name: i for i, (name, _) in enumerate(declared)}
        pairs = [(layer, layer.name, index[layer.name]) for layer in layers if layer.name in index]
    else:
        with_weights = [i for i, (_, shapes) in enumerate(declared) if shapes]
        if len(layers) != len(with_weights):
            raise ModelFileError(
                f"{filepath} has weights for {len(with_weights)} layers but model '{model.name}' has {len(layers)} "
                "layers with weights. Is it the file of a different architecture? Use load_weights(path, "
                "by_name=True) to match layers by name."
            )
        pairs = [(layer, declared[i][0], i) for layer, i in zip(layers, with_weights)]
    matched = []
    for layer, stored_name, i in pairs:
        shapes = [tuple(v.shape) for v in layer.weights]
        got = [tuple(s) for s in declared[i][1]]
        if shapes == got:
            matched.append((layer, stored_name, i))
        elif not skip_mismatch:
            raise ModelFileError(
                f"Layer '{layer.name}' expects weights of shapes {shapes}, but {filepath} has {got} for layer "
                f"'{stored_name}'. The file belongs to a different architecture (or pass skip_mismatch=True with "
                "by_name=True to skip such layers)."
            )
    return matched


def _set(model, stored, filepath, by_name, skip_mismatch):
    declared = [(name, [a.shape for a in arrays]) for name, arrays in stored]
    for layer, _, i in _match(model, declared, filepath, by_name, skip_mismatch):
        layer.set_weights(stored[i][1])


def model_layer_weights(model):
    """[(layer name, [(weight name, array), ...])] in ``model.layers`` order, for ``write_layer_weights``."""
    return [(layer.name, [(v.name.split("/", 1)[-1] if v.name.startswith(layer.name + "/") else v.name, v.value)
                          for v in layer.weights]) for layer in model.layers]

