"""The restricted unpickler behind both PyTorch file formats (zip and legacy): it resolves only the
handful of names tensor data needs (OrderedDict, the tensor rebuild functions, storage and dtype
names), each to a local numpy-building stand-in; any other name is refused before anything is called.
Storages come from a ``load_storage(key, numpy_dtype, numel)`` callback the format reader supplies.
"""
import collections
import pickle

import numpy as np

from tlkit.engine.saving.keras_h5_layout import SLACK_BYTES
from tlkit.zoo.weights.weight_file import WeightFileError, bfloat16_to_float32, shape_problem

MAX_PICKLE_BYTES = 256 * 1024 * 1024
# Tied weights list one storage twice, and float16 doubles when widened: real files stay far below.
VIEW_AMPLIFICATION = 4
RESAVE = (
    "Load it in PyTorch and save the state dict again: "
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
        # zip files: ('storage', type, key, location, numel); legacy files add view metadata, None or
        # (view_key, offset, numel): a slice of the root storage (only pre-1.0 files have views).
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80} (only tensor storages are allowed)")
        _, storage_type, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
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
        if view is None:
            return storage
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                and _is_count(view[1]) and _is_count(view[2]) and view[1] + view[2] <= numel):
            raise pickle.UnpicklingError(f"invalid storage view {view!r:.80} of a {numel}-element storage")
        return _Storage(storage.array[view[1]:view[1] + view[2]], self.budget)  # a slice: nothing copied
