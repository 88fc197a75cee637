"""Keras 3 weights: ``model.save_weights("m.weights.h5")`` and ``model.save("m.keras")``.

Keras 3 stores each object's variables at ``<path>/vars/0, 1, ...`` where the path follows the
object tree: ``layers/<auto name>/vars`` for a model's layers, ``layers/<sub model>/layers/...``
for nested models, and the layer's real name in the ``vars`` group's ``name`` attribute. A
``.keras`` file is a zip of ``config.json``, ``metadata.json`` and ``model.weights.h5``; the
weights are read from the zip in memory and the config is never looked at.

    wf = read_keras_archive("model.keras")
    wf.layers["block1_conv1"]        # [kernel, bias]
    wf.attrs["paths"]["block1_conv1"]  # "layers/conv2d"
"""
import io
import json
import os
import zipfile

import h5py

from tlkit.zoo.weights.keras_h5 import MAX_EXPANSION, SLACK_BYTES, _decode, open_h5, read_dataset, read_keras_h5_group
from tlkit.zoo.weights.weight_file import WeightFile, WeightFileError

# Training state and bookkeeping, not model weights.
NOT_WEIGHTS = {"optimizer", "compile_metrics", "compile_loss", "metrics", "loss_tracker"}
WEIGHTS_MEMBER = "model.weights.h5"


def read_v3_group(root, path, file_format="keras_weights_h5"):
    """Walk an open Keras 3 weights file; layer name -> arrays in ``vars`` order."""
    layers, weight_names, paths = {}, {}, {}

    def visit(group, h5_path, name_prefix):
        for key in group:
            if key == "vars" or key in NOT_WEIGHTS:
                continue
            child = group[key]
            child_path = f"{h5_path}/{key}" if h5_path else key
            if not isinstance(child, h5py.Group):
                raise WeightFileError(path, f"'{child_path}' is a {type(child).__name__}; expected a group")
            if "vars" not in child:  # a container such as "layers": its children share our prefix
                visit(child, child_path, name_prefix)
                continue
            name = name_prefix + _vars_name(child["vars"], key)
            if name in layers:  # two objects with one name: fall back to the unique file path
                name = child_path
            arrays, names = _read_vars(child["vars"], f"{child_path}/vars", path)
            if arrays:
                layers[name], weight_names[name], paths[name] = arrays, names, child_path
            visit(child, child_path, name + "/")

    if "vars" in root:  # the model's own variables (rare)
        arrays, names = _read_vars(root["vars"], "vars", path)
        if arrays:
            name = _vars_name(root["vars"], "top_level_model_weights")
            layers[name], weight_names[name], paths[name] = arrays, names, ""
    visit(root, "", "")
    return WeightFile(path, file_format, layers=layers, weight_names=weight_names, attrs={"paths": paths})


def _vars_name(vars_group, fallback):
    name = _decode(vars_group.attrs.get("name", fallback))
    return name if isinstance(name, str) and name else fallback


def _read_vars(vars_group, vars_path, path):
    if not isinstance(vars_group, h5py.Group):
        raise WeightFileError(path, f"'{vars_path}' should be a group of numbered arrays")
    keys = list(vars_group)
    if any(not k.isdigit() for k in keys) or sorted(int(k) for k in keys) != list(range(len(keys))):
        raise WeightFileError(path, f"'{vars_path}' should hold arrays named 0, 1, 2, ..., found {keys[:10]}")
    names = [str(i) for i in range(len(keys))]  # numeric order: "10" comes after "9"
    return [read_dataset(vars_group, n, path, f"'{vars_path}/{n}'") for n in names], names


def read_keras_archive(path):
    """Read the weights of a Keras 3 ``.keras`` zip archive without extracting it to disk."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if WEIGHTS_MEMBER not in names:
                sharded = any(n.endswith(".weights.json") for n in names)
                raise WeightFileError(
                    path,
                    f"the archive has no '{WEIGHTS_MEMBER}' (members: {names[:8]})"
                    + ("; sharded weights are not supported" if sharded else ""),
                    "Save the model with model.save('name.keras') in Keras 3, or save the weights alone with "
                    "model.save_weights('name.weights.h5')",
                )
            weights_bytes = read_member(archive, WEIGHTS_MEMBER, path)
            attrs = _archive_metadata(archive, path) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as e:
        if isinstance(e, FileNotFoundError):
            raise WeightFileError(path, "the file does not exist", "Check the path") from None
        raise WeightFileError(path, f"the zip archive is damaged ({type(e).__name__}: {e})") from e
    with open_h5(io.BytesIO(weights_bytes), path) as f:
        weights = read_keras_h5_group(f, path, archive_format="keras_archive")
    weights.format = "keras_archive"
    weights.attrs.update(attrs)
    return weights


def read_member(archive, name, path, max_bytes=None):
    """A zip member's bytes, refusing sizes the archive cannot honestly hold (zip bombs)."""
    info = archive.getinfo(name)
    limit = MAX_EXPANSION * info.compress_size + SLACK_BYTES
    if max_bytes is not None:
        limit = min(limit, max_bytes)
    if info.file_size > limit:
        raise WeightFileError(path, f"zip member '{name}' claims {info.file_size} bytes from {info.compress_size} stored")
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise WeightFileError(path, f"zip member '{name}' holds {len(data)} bytes, its header says {info.file_size}")
    return data


def _archive_metadata(archive, path):
    try:
        metadata = json.loads(read_member(archive, "metadata.json", path, max_bytes=SLACK_BYTES))
    except ValueError:
        return {}  # informative only: a damaged metadata.json must not hide the weights
    if not isinstance(metadata, dict):
        return {}
    return {k: v for k, v in metadata.items() if isinstance(v, (str, int, float, bool))}
