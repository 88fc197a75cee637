"""Keras HDF5 weight files: read any of them, write tlkit's own (Keras 2 layout).

The Keras 1/2 layout (``model.save_weights("w.h5")``, Keras's published ImageNet files)::

    /                      attrs: layer_names, backend, keras_version
    /<layer name>          attrs: weight_names (dataset paths inside this group, in order)
    /<layer name>/<weight name>   the arrays

Layer names may contain "/" (``fire2/squeeze1x1``): the group is then nested, and is reached
with ``f[layer_name]``. ``model.save("m.h5")`` puts the same tree under ``/model_weights``.
Keras 3 ``.weights.h5`` files (``/layers/<name>/vars/0, 1, ...``) are the other layout;
``read_keras_h5`` recognises both. Both layouts are read (and the Keras 2 one written) by the
engine's hardened layout modules (``tlkit.engine.saving.keras_h5_layout``, ``keras3_h5_layout``),
the same code ``load_model`` uses; this module wraps them into a ``WeightFile``.

    wf = read_keras_h5("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    kernel, bias = wf.layers["block1_conv1"]
    write_keras_h5("mine.h5", [("dense", [("dense/kernel:0", k), ("dense/bias:0", b)])],
                   metadata={"architecture": "vgg16", "preprocessing": "caffe"})
"""
import json
import os

import numpy as np

from tlkit.version import __version__
from tlkit.engine.saving.keras3_h5_layout import is_keras3_layout, read_keras3_layers
from tlkit.engine.saving.keras_h5_layout import (decode_text, has_attr_list, open_h5,
                                                 read_json_object_attr, read_layer_weights,
                                                 string_list_attr, write_json_attr, write_layer_weights)
from tlkit.utils.io import atomic_h5_file
from tlkit.zoo.weights.weight_file import WeightFile, WeightFileError


def read_keras_h5(path):
    """Read a Keras 1/2 or Keras 3 ``.h5`` weight file into a ``WeightFile``."""
    path = os.fspath(path)
    with open_h5(path) as f:
        return read_keras_h5_group(f, path)


def read_keras_h5_group(f, path, archive_format=None):
    """Read an open ``h5py.File`` (``path`` is for messages). Dispatches on the layout."""
    import h5py  # on first use: tlkit.zoo loads without h5py

    try:
        if "model_weights" in f and isinstance(f["model_weights"], h5py.Group):
            return _read_legacy(f["model_weights"], f, path)
        if has_attr_list(f, "layer_names"):
            return _read_legacy(f, f, path)
        if is_keras3_layout(f):
            stored, paths = read_keras3_layers(f, path)
            return WeightFile(path, archive_format or "keras_weights_h5", layers={n: a for n, _, a in stored},
                              weight_names={n: w for n, w, _ in stored}, attrs={"paths": paths})
    except WeightFileError:
        raise
    except Exception as e:  # h5py reports damage with many exception types
        raise WeightFileError(path, f"its HDF5 structure is damaged or unexpected ({type(e).__name__}: {e})") from e
    raise WeightFileError(
        path,
        "it is an HDF5 file but not a Keras weight file (no 'layer_names' attribute, no 'model_weights' "
        "or 'layers' group)",
    )


def _read_legacy(group, root, path):
    stored = [(name, names, arrays) for name, names, arrays in read_layer_weights(group, path) if names]
    attrs = _plain_attrs(root)
    attrs.update(_plain_attrs(group))
    attrs["layer_names"] = string_list_attr(group, "layer_names", path)
    return WeightFile(path, "keras_h5", layers={n: a for n, _, a in stored}, weight_names={n: w for n, w, _ in stored},
                      attrs=attrs, metadata=read_json_object_attr(root, "tlkit_metadata", path))


def _plain_attrs(obj):
    """Scalar attributes as Python values (strings decoded); lists and chunked names are skipped."""
    out = {}
    for key in obj.attrs:
        if key.startswith(("layer_names", "weight_names", "tlkit_metadata", "model_config", "training_config")):
            continue
        value = obj.attrs[key]
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        value = decode_text(value)
        if isinstance(value, (str, int, float, bool)):
            out[key] = value
    return out


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
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ValueError(f"write_keras_h5: metadata must be JSON-serializable ({e})") from None
    with atomic_h5_file(path) as f:  # built in memory: a full disk can't crash libhdf5
        # "tensorflow": kernels are in the TensorFlow convention (not flipped as Theano's);
        # any keras_version but "1" stops Keras 2 from converting Keras-1-era weights.
        f.attrs["backend"] = np.bytes_(b"tensorflow")  # fixed-length: read back as bytes, as Keras 2 expects
        f.attrs["keras_version"] = np.bytes_(b"2")
        write_json_attr(f, "tlkit_metadata", meta)
        write_layer_weights(f, layers)
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

