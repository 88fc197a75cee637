"""safetensors files, parsed directly: no code runs, and no header is trusted.

Layout: 8-byte little-endian header length N, N bytes of JSON
``{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}``,
then the raw little-endian data; offsets are relative to the end of the header and the
tensors must tile the data exactly (no gaps, no overlaps).

    wf = read_safetensors("model.safetensors")
    wf.tensors["features.0.weight"]          # float32 numpy array
    write_safetensors("out.safetensors", {"w": np.ones((2, 3), np.float32)}, metadata={"source": "x"})
"""
import json
import os
import struct

import numpy as np

from tlkit.utils.io import atomic_path
from tlkit.zoo.weights.weight_file import (WeightFile, WeightFileError, bfloat16_to_float32, shape_problem,
                                           standardize_array)

# safetensors name -> numpy dtype (little-endian); BF16 is read as raw bits then widened.
DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
NUMPY_TO_SAFETENSORS = {
    np.dtype(v).newbyteorder("<") if np.dtype(v).itemsize > 1 else np.dtype(v): k
    for k, v in DTYPES.items()
    if k != "BF16"
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's limit
FIX = "The file is damaged or was not written by a safetensors writer; download or convert it again"


def read_safetensors(path, float32=True):
    """Read every tensor (in header order) into a ``WeightFile`` with ``tensors`` filled.

    Floating tensors become float32 when ``float32`` (BF16 always does: numpy has no bfloat16).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            header, data_start = _read_header(f, file_size, path)
            specs = _check_specs(header, file_size - data_start, path)
            data = _read_data(f, data_start, file_size - data_start)
    except FileNotFoundError:
        raise WeightFileError(path, "the file does not exist", "Check the path") from None
    except OSError as e:
        raise WeightFileError(path, f"it cannot be read ({e})", "Check the path and permissions") from e
    tensors = {}
    for name, (dtype_name, shape, begin, end) in specs.items():
        array = np.frombuffer(data, dtype=DTYPES[dtype_name], count=(end - begin) // np.dtype(DTYPES[dtype_name]).itemsize,
                              offset=begin).reshape(shape)
        tensors[name] = bfloat16_to_float32(array) if dtype_name == "BF16" else standardize_array(array, float32)
    metadata = header.get("__metadata__") or {}
    return WeightFile(path, "safetensors", tensors=tensors, attrs=dict(metadata))


def _read_header(f, file_size, path):
    prefix = f.read(8)
    if len(prefix) < 8:
        raise WeightFileError(path, f"it has {len(prefix)} bytes, fewer than the 8-byte header length", FIX)
    (header_size,) = struct.unpack("<Q", prefix)
    if header_size > min(MAX_HEADER_BYTES, file_size - 8):
        raise WeightFileError(
            path, f"its header claims {header_size} bytes but the file has {file_size - 8} after the length field", FIX
        )
    raw = f.read(header_size)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WeightFileError(path, f"its header is not valid JSON ({e})", FIX) from None
    if not isinstance(header, dict):
        raise WeightFileError(path, "its header is not a JSON object", FIX)
    return header, 8 + header_size


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})[:5]}")
    return dict(pairs)


def _check_specs(header, data_size, path):
    """Validate every entry; the tensors must tile [0, data_size) exactly."""
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise WeightFileError(path, "its '__metadata__' is not a string -> string map", FIX)
    specs = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"tensor '{name}'"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise WeightFileError(path, f"{where} needs exactly dtype, shape and data_offsets, got {entry!r:.100}", FIX)
        dtype_name, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype_name not in DTYPES:
            raise WeightFileError(
                path, f"{where} has dtype {dtype_name!r}; supported: {', '.join(DTYPES)}",
                "Convert the tensor to float32/float16/bfloat16 before saving",
            )
        if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
            raise WeightFileError(path, f"{where} has an invalid shape {shape!r:.100}", FIX)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            raise WeightFileError(path, f"{where} has invalid data_offsets {offsets!r:.100}", FIX)
        begin, end = offsets
        if not begin <= end <= data_size:
            raise WeightFileError(path, f"{where} spans bytes {begin}..{end}, outside the {data_size}-byte data", FIX)
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(DTYPES[dtype_name]).itemsize
        if nbytes != end - begin:
            raise WeightFileError(path, f"{where} has shape {shape} {dtype_name} ({nbytes} bytes) but spans {end - begin}", FIX)
        problem = shape_problem(shape, np.dtype(DTYPES[dtype_name]).itemsize)
        if problem:
            raise WeightFileError(path, f"{where} {problem}", FIX)
        specs[name] = (dtype_name, tuple(shape), begin, end)
    position = 0
    for name, (_, _, begin, end) in sorted(specs.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else f"leaves a gap at byte {position}"
            raise WeightFileError(path, f"tensor '{name}' {problem}", FIX)
        position = end
    if position != data_size:
        raise WeightFileError(path, f"the tensors cover {position} of the {data_size} data bytes", FIX)
    return specs


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _read_data(f, start, size):
    """One read of exactly the validated data size (never more than the file holds)."""
    f.seek(start)
    data = f.read(size)
    if len(data) != size:
        raise OSError(f"read {len(data)} of {size} data bytes; the file changed while reading")
    return data


def write_safetensors(path, tensors, metadata=None):
    """Write ``{name: array}`` (in order) with optional ``{str: str}`` metadata, atomically."""
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("write_safetensors: metadata must map strings to strings")
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, array in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"write_safetensors: invalid tensor name {name!r}")
        array = np.asarray(array)
        dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
        if dtype not in NUMPY_TO_SAFETENSORS:
            raise ValueError(f"write_safetensors: tensor {name!r} has unsupported dtype {array.dtype}")
        blob = np.ascontiguousarray(array, dtype=dtype).tobytes()
        header[name] = {"dtype": NUMPY_TO_SAFETENSORS[dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # pad so the data starts 8-byte aligned
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(header_bytes)))
            f.write(header_bytes)
            for blob in blobs:
                f.write(blob)
    return os.fspath(path)
