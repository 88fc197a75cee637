"""Large scratch arrays reused from call to call (the recurrent layers' gate, state and gradient
sequences, tens of MB each). A fresh large array costs its page faults and the kernel's zeroing of
every page on every call, as much as the work done in it; an array handed back here is given to the
next request of the same shape and dtype instead.

    buf = workspace.take((t, n, k), np.float32)     # uninitialized, like np.empty
    workspace.give_back([buf])                      # when done with it
    workspace.give_back_when_dead(owner, [buf])     # when ``owner`` is garbage-collected

Only arrays that nothing else references are handed out again (a live view keeps its base out), and
the pool holds at most ``MAX_PER_SHAPE`` arrays of a shape and ``MAX_BYTES`` in all (the shapes used
longest ago leave first), so memory stays bounded.
"""
import sys
import threading
import weakref

import numpy as np

MAX_PER_SHAPE = 2
MAX_BYTES = 512 * 2 ** 20
# Arrays below this size come from numpy's allocator cheaply enough.
MIN_BYTES = 1 * 2 ** 20

_lock = threading.Lock()
_free = {}  # (shape, dtype) -> [arrays]
_held = {"bytes": 0}


def _key(shape, dtype):
    return tuple(int(s) for s in shape), np.dtype(dtype).str


def take(shape, dtype):
    """An uninitialized C-contiguous array of ``shape`` and ``dtype``, reused when one is free."""
    key = _key(shape, dtype)
    with _lock:
        arrays = _free.get(key, ())
        for i in range(len(arrays)):
            # References: the list's and getrefcount's argument; more means a view or a caller still holds it.
            if sys.getrefcount(arrays[i]) == 2:
                arr = arrays.pop(i)
                _held["bytes"] -= arr.nbytes
                return arr
    return np.empty(key[0], dtype)


def give_back(arrays):
    """Return arrays obtained from ``take`` (or any C-contiguous arrays the caller owns) to the pool. Past
    ``MAX_BYTES``, the arrays of the shapes given back longest ago are dropped first."""
    with _lock:
        for arr in arrays:
            if arr is None or arr.base is not None or not arr.flags.c_contiguous or arr.nbytes < MIN_BYTES:
                continue
            key = _key(arr.shape, arr.dtype)
            pool = _free.pop(key, [])
            _free[key] = pool  # most recently used last
            if len(pool) >= MAX_PER_SHAPE or arr.nbytes > MAX_BYTES:
                continue
            pool.append(arr)
            _held["bytes"] += arr.nbytes
            while _held["bytes"] > MAX_BYTES:
                oldest = next(iter(_free))
                if _free[oldest]:  # a shape whose arrays were all taken keeps an empty list
                    _held["bytes"] -= _free[oldest].pop(0).nbytes
                if not _free[oldest]:
                    del _free[oldest]


def give_back_when_dead(owner, arrays):
    """``give_back(arrays)`` once ``owner`` is garbage-collected (the owner must not be in ``arrays``)."""
    weakref.finalize(owner, give_back, list(arrays))


def clear():
    """Drop every pooled array (their memory goes back to the allocator)."""
    with _lock:
        _free.clear()
        _held["bytes"] = 0
