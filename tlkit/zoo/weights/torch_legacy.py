"""PyTorch's legacy (pre-1.6, non-zip) ``torch.save`` layout, read by the same restricted unpickler.

The file is five things back to back: a pickled magic number, a pickled protocol version (1001),
a pickled sys-info dict (byte order), the pickle of the object itself (tensors refer to storages by
persistent id), a pickled list of storage keys, then each storage in that order as an 8-byte
element count and its raw bytes. Element sizes come from the persistent ids inside the object
pickle, so it is walked twice: once with the tensor rebuild functions replaced by no-ops to learn
each storage's type and size (nothing is built), then for real once the storage offsets are known.
"""
import io
import os
import pickle
import pickletools

import numpy as np

from tlkit.zoo.weights.torch_unpickler import MAX_PICKLE_BYTES, RESAVE, RestrictedUnpickler, _Global
from tlkit.zoo.weights.weight_file import WeightFileError

LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # pickled torch magic number, pre-1.6 files
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
MAX_HEADER_BYTES = 64 * 1024  # the magic number, version, sys info and the storage-key list's share per key


class _DataOnlyUnpickler(pickle.Unpickler):
    """For the small records around the object pickle: plain data, no names at all."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: this record holds only plain data")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80} in a header record")


def _no_op(*args):
    return None


class _StorageSurvey(RestrictedUnpickler):
    """The same refusals as the real pass, but tensors are not built: it only records storages."""

    def find_class(self, module, name):
        found = super().find_class(module, name)
        return _Global(found.qualname, function=_no_op) if isinstance(found, _Global) and found.function else found

    def persistent_load(self, pid):
        self.load_storage = lambda key, numpy_dtype, numel: np.zeros(0, numpy_dtype)
        super().persistent_load(pid)
        return None


def unpickle_legacy(f, path):
    """(object, byteorder, view budget) from an open legacy file ``f``."""
    size = os.fstat(f.fileno()).st_size
    magic, version, sys_info = (_record(f, path) for _ in range(3))
    if magic != MAGIC_NUMBER or version != PROTOCOL_VERSION:
        raise WeightFileError(path, f"its legacy header is magic {magic!r:.40}, protocol {version!r:.40}", RESAVE)
    if not isinstance(sys_info, dict):
        raise WeightFileError(path, f"its sys info record is a {type(sys_info).__name__}, not a dict", RESAVE)
    byteorder = "little" if sys_info.get("little_endian", True) is True else "big"
    start = f.tell()
    pickle_bytes = f.read(MAX_PICKLE_BYTES)
    length = _pickle_length(pickle_bytes, path)
    survey = _StorageSurvey(io.BytesIO(pickle_bytes[:length]), None, path)
    survey.load()
    f.seek(start + length)
    keys = _record(f, path, max_bytes=MAX_HEADER_BYTES + 32 * len(survey.storages))
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys)):
        raise WeightFileError(path, f"its storage key record is not a list of distinct names: {keys!r:.80}", RESAVE)
    missing = set(survey.storages) - set(keys)
    if missing:
        raise WeightFileError(path, f"storage(s) {sorted(missing)[:3]} referenced by the pickle are not in the file",
                              RESAVE)
    order = "<" if byteorder == "little" else ">"
    offsets, offset = {}, f.tell()
    for key in keys:  # where each storage's bytes start; unreferenced ones are skipped over, not read
        f.seek(offset)
        count = int.from_bytes(_read_exact(f, 8, path, f"storage '{key}' count"), byteorder)
        known = survey.storages.get(key)
        itemsize = np.dtype(known[1]).itemsize if known else None
        if known and count != known[2]:
            raise WeightFileError(path, f"storage '{key}' holds {count} elements, the pickle expects {known[2]}", RESAVE)
        if itemsize is None:  # a storage nothing refers to: its element size is unknown, so nothing after it is
            break
        offsets[key] = offset + 8
        offset += 8 + count * itemsize
        if offset > size:
            raise WeightFileError(path, f"storage '{key}' reaches past the end of the {size}-byte file", RESAVE)

    def load_storage(key, numpy_dtype, numel):
        if key not in offsets:
            raise WeightFileError(path, f"storage '{key}' comes after one no tensor uses; its place is unknown", RESAVE)
        dtype = np.dtype(numpy_dtype).newbyteorder(order) if np.dtype(numpy_dtype).itemsize > 1 else np.dtype(numpy_dtype)
        f.seek(offsets[key])
        return np.frombuffer(_read_exact(f, numel * dtype.itemsize, path, f"storage '{key}'"), dtype=dtype)

    unpickler = RestrictedUnpickler(io.BytesIO(pickle_bytes[:length]), load_storage, path)
    return unpickler.load(), byteorder, unpickler.budget


def _record(f, path, max_bytes=MAX_HEADER_BYTES):
    start = f.tell()
    data = f.read(max_bytes)
    length = _pickle_length(data, path)
    f.seek(start + length)
    return _DataOnlyUnpickler(io.BytesIO(data[:length])).load()


def _pickle_length(data, path):
    """Bytes up to and including the pickle's STOP opcode, found by parsing (nothing is run)."""
    try:
        for opcode, _arg, position in pickletools.genops(data):
            if opcode.name == "STOP":
                return position + 1
    except Exception as e:  # genops raises ValueError and friends on garbage
        raise WeightFileError(path, f"a pickle in it is malformed or too long ({type(e).__name__}: {e})", RESAVE) from e
    raise WeightFileError(path, "a pickle in it has no end", RESAVE)


def _read_exact(f, count, path, what):
    data = f.read(count)
    if len(data) != count:
        raise WeightFileError(path, f"{what} is cut short ({len(data)} of {count} bytes)", RESAVE)
    return data
