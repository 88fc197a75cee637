"""Keras 3 ``.keras`` archives: a zip of ``config.json``, ``metadata.json`` and ``model.weights.h5``.

The weights are read from the zip in memory (by the same reader as a ``.weights.h5`` file) and
the config is never looked at::

    wf = read_keras_archive("model.keras")
    wf.layers["block1_conv1"]        # [kernel, bias]
    wf.attrs["paths"]["block1_conv1"]  # "layers/conv2d"
"""
import io
import json
import os
import zipfile

from tlkit.engine.saving.keras_h5_layout import SLACK_BYTES, open_h5, read_member
from tlkit.zoo.weights.keras_h5 import read_keras_h5_group
from tlkit.zoo.weights.weight_file import WeightFileError

WEIGHTS_MEMBER = "model.weights.h5"


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


def _archive_metadata(archive, path):
    try:
        metadata = json.loads(read_member(archive, "metadata.json", path, max_bytes=SLACK_BYTES))
    except ValueError:
        return {}  # informative only: a damaged metadata.json must not hide the weights
    if not isinstance(metadata, dict):
        return {}
    return {k: v for k, v in metadata.items() if isinstance(v, (str, int, float, bool))}
