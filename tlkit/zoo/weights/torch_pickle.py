"""PyTorch ``.pt`` / ``.pth`` state dicts, read without torch and without running their code.

``torch.save`` writes a zip: ``<prefix>/data.pkl`` (a pickle) plus one raw little-endian
buffer per storage at ``<prefix>/data/<key>``; before PyTorch 1.6 it wrote one flat stream
(torch_legacy.py). A pickle can name any Python callable and call it, so both are read by
torch_unpickler.RestrictedUnpickler, which runs nothing from the file.

    wf = read_torch_state_dict("vgg16.pth")
    wf.tensors["features.0.weight"].shape     # (64, 3, 3, 3), torch layout, float32
"""
import io
import os
import pickle
import zipfile

import numpy as np

from tlkit.engine.saving.keras_h5_layout import SLACK_BYTES  # noqa: F401  (re-exported for the fuzzer)
from tlkit.zoo.weights.keras_v3 import read_member
from tlkit.zoo.weights.torch_legacy import LEGACY_MAGIC, unpickle_legacy
from tlkit.zoo.weights.torch_unpickler import (ALLOWED_GLOBALS, MAX_PICKLE_BYTES, RESAVE,  # noqa: F401
                                               VIEW_AMPLIFICATION, RestrictedUnpickler, _tensor)
from tlkit.zoo.weights.weight_file import WeightFile, WeightFileError, standardize_array


def read_torch_state_dict(path, float32=True):
    """Read a ``torch.save`` file of tensors, zip or legacy (pre-1.6) (a state dict, possibly nested in a dict).

    Nested dicts/lists are flattened with "." (``{"model": {"fc.weight": t}}`` -> ``model.fc.weight``);
    non-tensor leaves (epoch counters, strings) are skipped. Floating tensors become float32
    when ``float32`` (bfloat16 always does).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(LEGACY_MAGIC))
    except FileNotFoundError:
        raise WeightFileError(path, "the file does not exist", "Check the path") from None
    try:
        if head == LEGACY_MAGIC:
            with open(path, "rb") as f:
                obj, byteorder, budget = unpickle_legacy(f, path)
        elif head[:1] == b"\x80":
            raise WeightFileError(path, "it is a bare pickle without PyTorch's magic number, not a torch.save file",
                                  RESAVE)
        else:
            with zipfile.ZipFile(path) as archive:
                obj, byteorder, budget = _unpickle(archive, path)
        tensors = {}
        _flatten(obj, "", tensors)
    except WeightFileError:
        raise
    except pickle.UnpicklingError as e:
        raise WeightFileError(path, str(e), "Load only weight files from sources you trust; save a plain "
                              "state dict with torch.save(model.state_dict(), path)") from e
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as e:
        raise WeightFileError(path, f"it is not a readable zip archive ({type(e).__name__}: {e})", RESAVE) from e
    except Exception as e:  # malformed pickles surface as many exception types
        raise WeightFileError(path, f"its data.pkl is malformed ({type(e).__name__}: {e})", RESAVE) from e
    if not tensors:
        raise WeightFileError(path, f"it holds no tensors (top-level object: {type(obj).__name__})", RESAVE)
    budget.used = 0  # the same tensor may be listed many times (pickle memo): count what the copies take
    for name, array in tensors.items():
        widened = array.dtype.kind == "f" and (float32 or array.dtype.itemsize == 2)
        budget.charge(array.size * 4 if widened else array.nbytes)
        tensors[name] = standardize_array(array, float32)
    return WeightFile(path, "torch", tensors=tensors, attrs={"byteorder": byteorder})


def _unpickle(archive, path):
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise WeightFileError(path, f"it is a zip file but not a torch.save archive (found {len(pickles)} data.pkl)", RESAVE)
    prefix = pickles[0][: -len("data.pkl")]
    names = set(archive.namelist())
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = read_member(archive, prefix + "byteorder", path, max_bytes=16).decode("ascii", "replace")
        if byteorder not in ("little", "big"):
            raise WeightFileError(path, f"its byteorder record says {byteorder!r}", RESAVE)

    def load_storage(key, numpy_dtype, numel):
        member = f"{prefix}data/{key}"
        if member not in names:
            raise WeightFileError(path, f"storage '{key}' referenced by data.pkl is missing from the archive", RESAVE)
        dtype = np.dtype(numpy_dtype)
        if byteorder == "big" and dtype.itemsize > 1:
            dtype = dtype.newbyteorder(">")
        expected = numel * dtype.itemsize
        data = read_member(archive, member, path)
        if len(data) != expected:
            raise WeightFileError(path, f"storage '{key}' holds {len(data)} bytes, data.pkl expects {expected}", RESAVE)
        return np.frombuffer(data, dtype=dtype)

    pickle_bytes = read_member(archive, pickles[0], path, max_bytes=MAX_PICKLE_BYTES)
    unpickler = RestrictedUnpickler(io.BytesIO(pickle_bytes), load_storage, path)
    return unpickler.load(), byteorder, unpickler.budget


def _flatten(obj, prefix, out):
    if isinstance(obj, np.ndarray):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(value, f"{prefix}{key}.", out)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _flatten(value, f"{prefix}{i}.", out)
