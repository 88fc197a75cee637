"""The Keras 1/2 weight layout inside HDF5, read and written in one hardened place.

Model files (``model.save``: the tree under ``/model_weights``), weight files (``save_weights``,
Keras's published ImageNet files) and ``tlkit.zoo``'s converted files all use it::

    <group>                attrs: layer_names (split into layer_names0, 1, ... past 64 KiB)
    <group>/<layer name>   attrs: weight_names (dataset paths inside this group, in order)
    <group>/<layer name>/<weight name>   the arrays

Layer names may contain "/" (``fire2/squeeze1x1``): the group is then nested. Nothing a file
declares is trusted: names, dtypes and storage are checked, and a dataset whose declared size is
far beyond the bytes the file stores for it (an allocation bomb) is refused before it is read.
Files tlkit writes carry a CRC-32 of their weights, verified on reading, so a changed data byte
is an error rather than a silently wrong (or NaN) model.
"""
import json
import zlib

import numpy as np

from tlkit.engine.saving.errors import WeightFileError

# HDF5 keeps attributes in the object header, which holds at most 64 KiB: longer lists are split
# into name0, name1, ... exactly as Keras does.
ATTR_CHUNK_BYTES = 64512
# gzip, the strongest filter Keras files could use, cannot shrink data more than ~1032:1, so a
# dataset declaring more bytes than that over what it stores is lying (allocation bomb).
MAX_EXPANSION = 1100
SLACK_BYTES = 1 << 20
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
CHECKSUM_ATTR = "tlkit_weights_crc32"


def decode_text(value):
    """An HDF5 string value (bytes, numpy bytes or str) as str; anything else unchanged."""
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(value).decode("latin-1")
    return str(value) if isinstance(value, (str, np.str_)) else value


class open_h5:
    """``with open_h5(path) as f``: ``h5py.File`` read-only, with open errors as WeightFileError."""

    def __init__(self, path_or_fileobj, path=None):
        self.source = path_or_fileobj
        self.path = path or path_or_fileobj

    def __enter__(self):
        import h5py  # on first use: `import tlkit` and tlkit.zoo load without h5py (12 MB, 0.1 s)

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


def get_member(group, name, kind, path, what):
    """``group[name]``, checked to be an HDF5 ``kind`` (Group or Dataset) reached by a relative name."""
    if not isinstance(name, str) or not name or name.startswith("/"):
        raise WeightFileError(path, f"{what} has an invalid name {name!r}")
    obj = group.get(name)
    if obj is None:
        raise WeightFileError(path, f"{what} is missing from the file")
    if not isinstance(obj, kind):
        raise WeightFileError(path, f"{what} is a {type(obj).__name__}, expected an HDF5 {kind.__name__}")
    return obj


def _is_bfloat16(ds):
    return decode_text(ds.attrs.get("dtype", "")) == "bfloat16" and ds.dtype.itemsize == 2


def check_dataset(group, name, path, what):
    """The dataset ``group[name]``, after checking (without reading it) that it is a numeric array
    stored in this file whose declared size the stored bytes can honestly hold."""
    import h5py  # on first use, as in open_h5

    ds = get_member(group, name, h5py.Dataset, path, what)
    if ds.shape is None:
        raise WeightFileError(path, f"{what} is an empty HDF5 dataspace, not an array")
    if ds.dtype.kind not in "fiub" and not _is_bfloat16(ds):
        raise WeightFileError(path, f"{what} has dtype {ds.dtype}, not a numeric array")
    if ds.is_virtual or ds.external:
        raise WeightFileError(path, f"{what} keeps its data outside the file (external or virtual storage)")
    stored = ds.id.get_storage_size()
    limit = MAX_EXPANSION * stored + SLACK_BYTES
    nbytes = int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize
    chunk_bytes = int(np.prod(ds.chunks, dtype=object)) * ds.dtype.itemsize if ds.chunks else 0
    if nbytes > limit or chunk_bytes > limit:
        raise WeightFileError(
            path, f"{what} declares shape {ds.shape} ({nbytes} bytes) but the file stores only {stored} bytes for it"
        )
    return ds


def read_checked(ds, float32=True):
    """The array of a dataset ``check_dataset`` passed: native order, floats as float32 when ``float32``."""
    array = ds[()]
    if _is_bfloat16(ds):
        raw = np.frombuffer(np.ascontiguousarray(array).tobytes(), "<u2").reshape(ds.shape)
        return bfloat16_to_float32(raw)
    return standardize_array(array, float32)


def read_dataset(group, name, path, what):
    """One weight array, after ``check_dataset``."""
    return read_checked(check_dataset(group, name, path, what))


def standardize_array(array, float32=True):
    """Native byte order, C-contiguous; floating types become float32 when ``float32``."""
    array = np.asarray(array)
    dtype = np.float32 if float32 and array.dtype.kind == "f" else array.dtype.newbyteorder("=")
    return np.asarray(array, dtype=dtype, order="C")  # unlike ascontiguousarray, keeps 0-d arrays 0-d


def bfloat16_to_float32(raw_uint16):
    """bfloat16 is the top half of a float32: shift the 16 stored bits up."""
    return (np.asarray(raw_uint16, dtype=np.uint32) << 16).view(np.float32)


# --- attributes ---------------------------------------------------------------------------------


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
                raise WeightFileError(path, f"{owner}'s '{name}' attribute holds {item!r:.80}, not a name")
            out.append(decode_text(item))
    return out


def write_string_list(obj, name, items):
    """Store a list of strings as Keras does: one attribute, or ``name0, name1, ...`` past 64 KiB."""
    encoded = [s.encode("utf-8") for s in items]
    if not encoded:
        obj.attrs[name] = np.array([], dtype=np.float64)  # what Keras writes for "no weights"
        return
    chunks, current = [], []
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


def write_json_attr(obj, name, value):
    """``value`` as JSON text in attribute ``name`` (split into chunks past 64 KiB)."""
    text = json.dumps(value)
    size = ATTR_CHUNK_BYTES // 4  # characters: each takes at most 4 UTF-8 bytes
    write_string_list(obj, name, [text[i: i + size] for i in range(0, len(text), size)] or [""])


def read_json_object_attr(obj, name, path):
    """The JSON object stored by ``write_json_attr`` (or as one plain string), or None when absent."""
    if not has_attr_list(obj, name):
        return None
    text = "".join(string_list_attr(obj, name, path))
    try:
        value = json.loads(text)
    except ValueError as e:
        raise WeightFileError(path, f"its '{name}' attribute is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise WeightFileError(path, f"its '{name}' attribute is a JSON {type(value).__name__}, not an object "
                                    "(the file was edited or damaged)")
    return value


# --- the layer tree ---------------------------------------------------------------------------


def layer_datasets(group, path):
    """[(layer_name, [weight_name, ...], [h5py.Dataset, ...]), ...] in the stored order, every
    dataset checked by ``check_dataset`` and none read. Keras 3's legacy ``top_level_model_weights``
    group (the model's own variables) comes last when present."""
    import h5py  # on first use, as in open_h5

    out = []
    for layer_name in string_list_attr(group, "layer_names", path):
        layer_group = get_member(group, layer_name, h5py.Group, path, f"layer '{layer_name}' listed in layer_names")
        names = string_list_attr(layer_group, "weight_names", path, owner=f"layer group '{layer_name}'")
        out.append((layer_name, names, [check_dataset(layer_group, n, path, f"weight '{n}' of layer '{layer_name}'")
                                        for n in names]))
    if "top_level_model_weights" in group:
        extra = get_member(group, "top_level_model_weights", h5py.Group, path, "'top_level_model_weights'")
        names = string_list_attr(extra, "weight_names", path, owner="'top_level_model_weights'")
        out.append(("top_level_model_weights", names, [check_dataset(extra, n, path, f"weight '{n}'") for n in names]))
    return out


def read_layer_weights(group, path, check=None):
    """[(layer_name, [weight_name, ...], [array, ...]), ...] in the stored order.

    ``check([(layer_name, [declared shape, ...]), ...])``, when given, runs before any array is read
    (it raises to refuse the file, e.g. when the shapes are not the model's). The stored CRC-32 of
    the weights, when the file has one, is verified.
    """
    layers = layer_datasets(group, path)
    if check is not None:
        check([(name, [tuple(ds.shape) for ds in datasets]) for name, _, datasets in layers])
    out = [(name, names, [read_checked(ds) for ds in datasets]) for name, names, datasets in layers]
    if CHECKSUM_ATTR in group.attrs:
        stored = group.attrs[CHECKSUM_ATTR]
        if weights_checksum(a for _, _, arrays in out for a in arrays) != _as_int(stored):
            raise WeightFileError(
                path, "its weights do not match the checksum stored with them: data bytes were changed or damaged "
                      "after it was written", "Copy the file again from its source, or save the model again")
    return out


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def weights_checksum(arrays):
    """CRC-32 of the arrays as read back (dtype, shape and bytes, in order)."""
    crc = 0
    for array in arrays:
        array = standardize_array(array)
        crc = zlib.crc32(f"{array.dtype.str}{array.shape}".encode(), crc)
        crc = zlib.crc32(memoryview(array.reshape(-1)).cast("B"), crc)
    return crc


def write_layer_weights(group, layers):
    """``layers``: [(layer_name, [(weight_name, array), ...]), ...] in model order (weightless layers
    with ``[]``). Repeated weight names inside a layer fall back to ``<name>_<index>``."""
    write_string_list(group, "layer_names", [name for name, _ in layers])
    for layer_name, weights in layers:
        g = group.require_group(layer_name)
        names, seen = [], set()
        for i, (weight_name, value) in enumerate(weights):
            name = weight_name if weight_name not in seen else f"{weight_name}_{i}"
            seen.add(name)
            names.append(name)
            g.create_dataset(name, data=np.asarray(value))
        write_string_list(g, "weight_names", names)
    store_checksum(group, (value for _, weights in layers for _, value in weights))


def store_checksum(group, arrays):
    """The CRC-32 that ``read_layer_weights`` verifies."""
    group.attrs[CHECKSUM_ATTR] = np.int64(weights_checksum(arrays))


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
