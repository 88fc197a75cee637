"""Keras HDF5 weight files: read any of them, write tlkit's own (Keras 2 layout).

The Keras 1/2 layout (``model.save_weights("w.h5")``, Keras's published ImageNet files)::

    /                      attrs: layer_names, backend, keras_version
    /<layer name>          attrs: weight_names (dataset paths inside this group, in order)
    /<layer name>/<weight name>   the arrays

Layer names may contain "/" (``fire2/squeeze1x1``): the group is then nested, and is reached
with ``f[layer_name]``. ``model.save("m.h5")`` puts the same tree under ``/model_weights``.
Keras 3 ``.weights.h5`` files (``/layers/<name>/vars/0, 1, ...``) are read by
``keras_v3.py``; ``read_keras_h5`` recognises both.

    wf = read_keras_h5("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    kernel, bias = wf.layers["block1_conv1"]
    write_keras_h5("mine.h5", [("dense", [("dense/kernel:0", k), ("dense/bias:0", b)])],
                   metadata={"architecture": "vgg16", "preprocessing": "caffe"})
"""
import json
import os

import h5py
import numpy as np

from tlkit.version import __version__
from tlkit.utils.io import atomic_path
from tlkit.zoo.weights.weight_file import WeightFile, WeightFileError, bfloat16_to_float32, standardize_array

# HDF5 keeps attributes in the object header, which holds at most 64 KiB: longer lists are split
# into name0, name1, ... exactly as Keras does.
ATTR_CHUNK_BYTES = 64512
# gzip, the strongest filter Keras files could use, cannot shrink data more than ~1032:1, so a
# dataset declaring more bytes than that over what it stores is lying (allocation bomb).
MAX_EXPANSION = 1100
SLACK_BYTES = 1 << 20
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_keras_h5(path):
    """Read a Keras 1/2 or Keras 3 ``.h5`` weight file into a ``WeightFile``."""
    path = os.fspath(path)
    with open_h5(path) as f:
        return read_keras_h5_group(f, path)


def read_keras_h5_group(f, path, archive_format=None):
    """Read an open ``h5py.File`` (``path`` is for messages). Dispatches on the layout."""
    from tlkit.zoo.weights import keras_v3  # the two layouts share this module's helpers

    try:
        if "model_weights" in f and isinstance(f["model_weights"], h5py.Group):
            return _read_legacy(f["model_weights"], f, path)
        if has_attr_list(f, "layer_names"):
            return _read_legacy(f, f, path)
        if "layers" in f or "vars" in f or "_layer_checkpoint_dependencies" in f:
            return keras_v3.read_v3_group(f, path, archive_format or "keras_weights_h5")
    except WeightFileError:
        raise
    except Exception as e:  # h5py reports damage with many exception types
        raise WeightFileError(path, f"its HDF5 structure is damaged or unexpected ({type(e).__name__}: {e})") from e
    raise WeightFileError(
        path,
        "it is an HDF5 file but not a Keras weight file (no 'layer_names' attribute, no 'model_weights' "
        "or 'layers' group)",
    )


class open_h5:
    """``with open_h5(path) as f``: ``h5py.File`` read-only, with open errors as WeightFileError."""

    def __init__(self, path_or_fileobj, path=None):
        self.source = path_or_fileobj
        self.path = path or path_or_fileobj

    def __enter__(self):
        try:
            self.file = h5py.File(self.source, "r")
        except FileNotFoundError:
            raise WeightFileError(self.path, "the file does not exist", "Check the path") from None
        except Exception as e:
            raise WeightFileError(self.path, f"HDF5 cannot open it ({e}); it is truncated, damaged or not HDF5") from e
        return self.file

    def __exit__(self, *exc):
        try:
            self.file.close()
        except Exception:
            pass  # closing a damaged file may fail again; the first error is the useful one
        return False


def _read_legacy(group, root, path):
    layers, weight_names = {}, {}
    layer_names = string_list_attr(group, "layer_names", path)
    for layer_name in layer_names:
        layer_group = _get(group, layer_name, h5py.Group, path, f"layer '{layer_name}' listed in layer_names")
        names = string_list_attr(layer_group, "weight_names", path, owner=f"layer group '{layer_name}'")
        if names:
            layers[layer_name] = [read_dataset(layer_group, n, path, f"weight '{n}' of layer '{layer_name}'") for n in names]
            weight_names[layer_name] = names
    if "top_level_model_weights" in group:  # Keras 3 legacy files: the model's own variables
        extra = group["top_level_model_weights"]
        names = string_list_attr(extra, "weight_names", path, owner="'top_level_model_weights'")
        if names:
            layers["top_level_model_weights"] = [read_dataset(extra, n, path, f"weight '{n}'") for n in names]
            weight_names["top_level_model_weights"] = names
    attrs = _plain_attrs(root)
    attrs.update(_plain_attrs(group))
    attrs["layer_names"] = layer_names
    metadata = _tlkit_metadata(root, path)
    return WeightFile(path, "keras_h5", layers=layers, weight_names=weight_names, attrs=attrs, metadata=metadata)


def _get(group, name, kind, path, what):
    if not name or name.startswith("/"):
        raise WeightFileError(path, f"{what} has an invalid name {name!r}")
    obj = group.get(name)
    if obj is None:
        raise WeightFileError(path, f"{what} is missing from the file")
    if not isinstance(obj, kind):
        raise WeightFileError(path, f"{what} is a {type(obj).__name__}, expected an HDF5 {kind.__name__}")
    return obj


def read_dataset(group, name, path, what):
    """One weight array, after checking its dtype and that its size is backed by stored bytes."""
    ds = _get(group, name, h5py.Dataset, path, what)
    if ds.shape is None:
        raise WeightFileError(path, f"{what} is an empty HDF5 dataspace, not an array")
    dtype = ds.dtype
    is_bfloat16 = _decode(ds.attrs.get("dtype", "")) == "bfloat16" and dtype.itemsize == 2
    if dtype.kind not in "fiub" and not is_bfloat16:
        raise WeightFileError(path, f"{what} has dtype {dtype}, not a numeric array")
    nbytes = int(np.prod(ds.shape, dtype=object)) * dtype.itemsize
    stored = ds.id.get_storage_size()
    if nbytes > MAX_EXPANSION * stored + SLACK_BYTES:
        raise WeightFileError(
            path, f"{what} declares shape {ds.shape} ({nbytes} bytes) but the file stores only {stored} bytes for it"
        )
    array = ds[()]
    if is_bfloat16:
        return bfloat16_to_float32(np.frombuffer(np.ascontiguousarray(array).tobytes(), "<u2").reshape(ds.shape))
    return standardize_array(array)


def has_attr_list(obj, name):
    return name in obj.attrs or f"{name}0" in obj.attrs


def string_list_attr(obj, name, path, owner="the file"):
    """A list-of-strings attribute, joined from Keras's ``name0, name1, ...`` chunks if split."""
    if name in obj.attrs:
        values = [obj.attrs[name]]
    elif f"{name}0" in obj.attrs:
        values, i = [], 0
        while f"{name}{i}" in obj.attrs:
            values.append(obj.attrs[f"{name}{i}"])
            i += 1
    else:
        raise WeightFileError(path, f"{owner} has no '{name}' attribute")
    out = []
    for value in values:
        items = value.ravel().tolist() if isinstance(value, np.ndarray) else [value]
        if isinstance(value, np.ndarray) and value.size and value.dtype.kind not in "SUO":
            raise WeightFileError(path, f"{owner}'s '{name}' attribute holds {value.dtype} values, not names")
        for item in items:
            if not isinstance(item, (str, bytes, np.bytes_, np.str_)):
                raise WeightFileError(path, f"{owner}'s '{name}' attribute holds {item!r}, not a name")
            out.append(_decode(item))
    return out


def _decode(value):
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(value).decode("latin-1")
    return str(value) if isinstance(value, (str, np.str_)) else value


def _plain_attrs(obj):
    """Scalar attributes as Python values (strings decoded); lists and chunked names are skipped."""
    out = {}
    for key in obj.attrs:
        if key.startswith(("layer_names", "weight_names", "tlkit_metadata", "model_config", "training_config")):
            continue
        value = obj.attrs[key]
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        value = _decode(value)
        if isinstance(value, (str, int, float, bool)):
            out[key] = value
    return out


def _tlkit_metadata(root, path):
    if not has_attr_list(root, "tlkit_metadata"):
        return None
    text = "".join(string_list_attr(root, "tlkit_metadata", path))
    try:
        metadata = json.loads(text)
    except ValueError as e:
        raise WeightFileError(path, f"its 'tlkit_metadata' attribute is not valid JSON ({e})") from e
    if not isinstance(metadata, dict):
        raise WeightFileError(path, "its 'tlkit_metadata' attribute is not a JSON object")
    return metadata


# --- writing ----------------------------------------------------------------------------------


def write_keras_h5(path, layers, metadata=None):
    """Write weights in the Keras 2 layout (Keras and tlkit both read it), atomically.

    ``layers``: ``[(layer_name, [(weight_name, array), ...]), ...]`` in model order; layers
    without weights may be listed with ``[]``. ``metadata`` (JSON-able dict, e.g. architecture,
    preprocessing, source file name and sha256) is stored in the root attribute
    ``tlkit_metadata`` together with the tlkit version and every layer's weight shapes.
    """
    layers = _check_layers(layers)
    meta = dict(metadata or {})
    meta["tlkit_version"] = __version__
    meta["weight_shapes"] = {name: [list(a.shape) for _, a in weights] for name, weights in layers}
    try:
        meta_text = json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ValueError(f"write_keras_h5: metadata must be JSON-serializable ({e})") from None
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _write_string_list(f, "layer_names", [name for name, _ in layers])
            # "tensorflow": kernels are in the TensorFlow convention (not flipped as Theano's);
            # any keras_version but "1" stops Keras 2 from converting Keras-1-era weights.
            f.attrs["backend"] = np.bytes_(b"tensorflow")  # fixed-length: read back as bytes, as Keras 2 expects
            f.attrs["keras_version"] = np.bytes_(b"2")
            _write_string_list(f, "tlkit_metadata", _split_text(meta_text))
            for name, weights in layers:
                group = f.require_group(name)
                _write_string_list(group, "weight_names", [w for w, _ in weights])
                for weight_name, array in weights:
                    group.create_dataset(weight_name, data=array)
    return os.fspath(path)


def _check_layers(layers):
    checked, seen = [], set()
    for item in layers:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"write_keras_h5: each layer must be (name, [(weight_name, array), ...]), got {item!r:.80}")
        name, weights = item
        _check_h5_name(name, "layer name")
        if name in seen:
            raise ValueError(f"write_keras_h5: layer name {name!r} appears twice; layer names must be unique")
        seen.add(name)
        arrays, weight_names = [], set()
        for weight in weights:
            weight_name, array = weight
            _check_h5_name(weight_name, f"weight name in layer {name!r}")
            if weight_name in weight_names:
                raise ValueError(f"write_keras_h5: weight {weight_name!r} appears twice in layer {name!r}")
            weight_names.add(weight_name)
            array = np.asarray(array)
            if array.dtype.kind not in "fiub":
                raise ValueError(f"write_keras_h5: weight {weight_name!r} of layer {name!r} has dtype {array.dtype}")
            arrays.append((weight_name, array))
        checked.append((name, arrays))
    return checked


def _check_h5_name(name, what):
    parts = name.split("/") if isinstance(name, str) else [""]
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"write_keras_h5: invalid {what} {name!r} (empty, '.', '..' or leading/trailing '/')")


def _split_text(text):
    size = ATTR_CHUNK_BYTES // 2
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _write_string_list(obj, name, items):
    encoded = [s.encode("utf-8") for s in items]
    if not encoded:
        obj.attrs[name] = np.array([], dtype=np.float64)  # what Keras writes for "no weights"
        return
    chunks, current, current_bytes = [], [], 0
    width = max(len(s) for s in encoded)
    for s in encoded:
        if current and (len(current) + 1) * width > ATTR_CHUNK_BYTES:
            chunks.append(current)
            current = []
        current.append(s)
    chunks.append(current)
    if len(chunks) == 1:
        obj.attrs[name] = np.array(chunks[0])
    else:
        for i, chunk in enumerate(chunks):
            obj.attrs[f"{name}{i}"] = np.array(chunk)
