"""PyTorch ``.pt`` / ``.pth`` state dicts, read without torch and without running their code.

``torch.save`` writes a zip: ``<prefix>/data.pkl`` (a pickle) plus one raw little-endian
buffer per storage at ``<prefix>/data/<key>``. A pickle can name any Python callable and call
it, so this unpickler resolves only the handful of names tensor data needs (OrderedDict, the
tensor rebuild functions, storage and dtype names), each to a local numpy-building stand-in;
any other name is refused before anything is called.

    wf = read_torch_state_dict("vgg16.pth")
    wf.tensors["features.0.weight"].shape     # (64, 3, 3, 3), torch layout, float32
"""
import collections
import io
import os
import pickle
import zipfile

import numpy as np

from tlkit.engine.saving.keras_h5_layout import SLACK_BYTES
from tlkit.zoo.weights.keras_v3 import read_member
from tlkit.zoo.weights.weight_file import (WeightFile, WeightFileError, bfloat16_to_float32, shape_problem,
                                           standardize_array)

MAX_PICKLE_BYTES = 256 * 1024 * 1024
# Tied weights list one storage twice, and float16 doubles when widened: real files stay far below.
VIEW_AMPLIFICATION = 4
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # pickled torch magic number, pre-1.6 files
RESAVE = (
    "Load it in PyTorch 1.6 or newer and save the state dict again: "
    "torch.save(torch.load(path, weights_only=True), 'weights.pth')"
)


class _Global:
    """A stand-in for an allowed torch name. Frozen: these are shared by every load, so a
    pickle's BUILD opcode must not be able to rewire them (e.g. point ``function`` elsewhere)."""

    __slots__ = ("qualname", "numpy_dtype", "function")

    def __init__(self, qualname, numpy_dtype=None, function=None):
        for slot, value in zip(self.__slots__, (qualname, numpy_dtype, function)):
            object.__setattr__(self, slot, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{self.qualname} cannot be modified")

    def __call__(self, *args):
        if self.function is None:
            raise ValueError(f"{self.qualname} is not callable")
        return self.function(*args)

    def __repr__(self):
        return self.qualname


class _Storage:
    __slots__ = ("array", "budget")

    def __init__(self, array, budget):
        self.array = array
        self.budget = budget


class _ViewBudget:
    """Bytes of tensor data one file may make: ``VIEW_AMPLIFICATION`` times the storage bytes it
    really holds (each storage read once), plus slack for tiny files. Views share storages, so a
    small file can otherwise ask for the same megabytes thousands of times over."""

    def __init__(self, path):
        self.path, self.stored, self.used = path, 0, 0

    def add_storage(self, nbytes):
        self.stored += nbytes

    def charge(self, nbytes):
        """Count a tensor's bytes before it is built; refuse when the total passes the bound."""
        self.used += nbytes
        limit = VIEW_AMPLIFICATION * self.stored + SLACK_BYTES
        if self.used > limit:
            raise WeightFileError(
                self.path, f"its tensors add up to more than {self.used} bytes from {self.stored} bytes of storage "
                           f"(views repeat the same data more than {VIEW_AMPLIFICATION} times over)", RESAVE)


# Storage element types, by legacy storage class and by dtype name (numpy dtype, little-endian).
_ELEMENT_TYPES = {
    "Double": ("float64", "<f8"), "Float": ("float32", "<f4"), "Half": ("float16", "<f2"),
    "BFloat16": ("bfloat16", "<u2"), "Long": ("int64", "<i8"), "Int": ("int32", "<i4"),
    "Short": ("int16", "<i2"), "Char": ("int8", "i1"), "Byte": ("uint8", "u1"), "Bool": ("bool", "?"),
}


def _tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None, dtype=None):
    """Build the numpy array a torch tensor view describes (honouring offset and strides)."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor storage is {type(storage).__name__}, not a stored buffer")
    buffer = storage.array
    if dtype is not None:  # _rebuild_tensor_v3: untyped bytes plus a dtype
        if not (isinstance(dtype, _Global) and dtype.numpy_dtype) or buffer.dtype != np.uint8:
            raise ValueError(f"unsupported tensor dtype {dtype!r}")
        item = np.dtype(dtype.numpy_dtype).itemsize
        if buffer.size % item:
            raise ValueError(f"storage of {buffer.size} bytes is not a whole number of {dtype!r} elements")
        buffer = buffer.view(dtype.numpy_dtype)
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if not _is_count(storage_offset) or len(size) != len(stride):
        raise ValueError(f"invalid tensor geometry: offset {storage_offset!r}, size {size}, stride {stride}")
    problem = shape_problem(size, buffer.itemsize)
    if problem:
        raise ValueError(f"tensor {problem}")
    count = int(np.prod(size, dtype=object))
    if count:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= buffer.size:
            raise ValueError(f"tensor of size {size} stride {stride} at offset {storage_offset} "
                             f"reaches past its {buffer.size}-element storage")
        if count > buffer.size:  # only overlapping (zero-stride) views can do this: refuse the blow-up
            raise ValueError(f"tensor of size {size} has more elements than its {buffer.size}-element storage")
    storage.budget.charge(count * buffer.itemsize)  # before anything is allocated for this tensor
    if _is_c_contiguous(size, stride):  # a plain slice of the storage: no copy
        array = buffer[storage_offset:storage_offset + count].reshape(size)
    else:
        array = np.array(np.lib.stride_tricks.as_strided(
            buffer[storage_offset:] if count else buffer[:0],
            shape=size, strides=[s * buffer.itemsize for s in stride] if count else None, writeable=False,
        ))
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:
        # Only bfloat16 maps to 16-bit unsigned here (torch.uint16 is not allowed above).
        array = bfloat16_to_float32(array)
    if isinstance(metadata, dict) and metadata.get("neg"):
        array = -array
    return array


def _is_c_contiguous(size, stride):
    expected = 1
    for n, s in zip(reversed(size), reversed(stride)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    return _tensor(storage, storage_offset, size, stride, metadata=metadata, dtype=dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, np.ndarray):
        raise ValueError(f"parameter data is {type(data).__name__}, not a tensor")
    return data


def _int_tuple(value, what):
    if not isinstance(value, (tuple, list)) or not all(_is_count(v) for v in value):
        raise ValueError(f"tensor {what} {value!r:.80} is not a tuple of non-negative integers")
    return tuple(value)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def _allowed_globals():
    allowed = {("collections", "OrderedDict"): collections.OrderedDict}
    for name in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_tensor_v3", "_rebuild_parameter",
                 "_rebuild_parameter_with_state"):
        function = {"_rebuild_tensor_v2": _tensor, "_rebuild_tensor": _rebuild_tensor,
                    "_rebuild_tensor_v3": _rebuild_tensor_v3}.get(name, _rebuild_parameter)
        allowed[("torch._utils", name)] = _Global(f"torch._utils.{name}", function=function)
    for storage_name, (dtype_name, numpy_dtype) in _ELEMENT_TYPES.items():
        allowed[("torch", f"{storage_name}Storage")] = _Global(f"torch.{storage_name}Storage", numpy_dtype)
        allowed[("torch", dtype_name)] = _Global(f"torch.{dtype_name}", numpy_dtype)
    allowed[("torch", "UntypedStorage")] = _Global("torch.UntypedStorage", "u1")
    return allowed


ALLOWED_GLOBALS = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles tensor data only; storages come from ``load_storage(key, numpy_dtype, numel)``."""

    def __init__(self, file, load_storage, path="file"):
        super().__init__(file)
        self.load_storage = load_storage
        self.storages = {}
        self.budget = _ViewBudget(path)

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only tensor data is allowed; this file may try to run code"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80} (only tensor storages are allowed)")
        _, storage_type, key, _location, numel = pid
        if not (isinstance(storage_type, _Global) and storage_type.numpy_dtype and storage_type.function is None):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r:.80}")
        if not (isinstance(key, str) and key.isalnum() and _is_count(numel)):
            raise pickle.UnpicklingError(f"invalid storage reference {pid!r:.80}")
        if key not in self.storages:
            array = self.load_storage(key, storage_type.numpy_dtype, numel)  # each storage read once
            self.budget.add_storage(array.nbytes)
            self.storages[key] = (_Storage(array, self.budget), storage_type.numpy_dtype, numel)
        storage, numpy_dtype, known_numel = self.storages[key]
        if (numpy_dtype, known_numel) != (storage_type.numpy_dtype, numel):
            raise pickle.UnpicklingError(f"storage '{key}' is referenced with two different types or sizes")
        return storage


def read_torch_state_dict(path, float32=True):
    """Read a ``torch.save`` zip file of tensors (a state dict, possibly nested in a dict).

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
    if head == LEGACY_MAGIC or head[:1] == b"\x80":
        raise WeightFileError(path, "it uses PyTorch's legacy (pre-1.6, non-zip) serialization, which is not supported", RESAVE)
    try:
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
