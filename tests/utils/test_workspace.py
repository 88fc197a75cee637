"""utils.workspace: large arrays handed back are reused, never while a view of them is alive, and the
pool stays bounded."""
import gc

import numpy as np

from tlkit.utils import workspace

BIG = (512, 1024)  # 2 MB of float32: above MIN_BYTES


def setup_function():
    workspace.clear()


def test_array_given_back_is_reused_for_same_shape_and_dtype():
    a = workspace.take(BIG, np.float32)
    address = a.ctypes.data
    workspace.give_back([a])
    del a
    assert workspace.take(BIG, np.float64).ctypes.data != address  # other dtype: a fresh array
    b = workspace.take(BIG, np.float32)
    assert b.ctypes.data == address and b.shape == BIG and b.dtype == np.float32


def test_array_with_a_live_view_is_not_handed_out():
    a = workspace.take(BIG, np.float32)
    view = a[3:5]
    workspace.give_back([a])
    del a
    fresh = workspace.take(BIG, np.float32)
    assert not np.shares_memory(fresh, view)
    del view
    workspace.give_back([fresh])


def test_owner_death_gives_back_and_small_or_view_arrays_are_ignored():
    class Owner:
        pass

    owner = Owner()
    a = workspace.take(BIG, np.float32)
    address = a.ctypes.data
    workspace.give_back_when_dead(owner, [a])
    del a
    assert workspace.take(BIG, np.float32).ctypes.data != address  # owner alive: not back yet
    del owner
    gc.collect()
    assert workspace.take(BIG, np.float32).ctypes.data == address
    small, big = np.empty(10, np.float32), np.empty(BIG, np.float32)
    workspace.give_back([small, big[1:]])
    assert workspace._held["bytes"] == 0


def test_pool_is_bounded_per_shape_and_in_bytes(monkeypatch):
    workspace.give_back([np.empty(BIG, np.float32) for _ in range(workspace.MAX_PER_SHAPE + 3)])
    assert workspace._held["bytes"] == workspace.MAX_PER_SHAPE * 4 * BIG[0] * BIG[1]
    workspace.clear()
    monkeypatch.setattr(workspace, "MAX_BYTES", 7 * 2 ** 20)
    arrays = [np.empty((k + 1,) + BIG, np.float32) for k in range(3)]  # 2, 4, 6 MB
    addresses = [a.ctypes.data for a in arrays]
    workspace.give_back(arrays)
    del arrays
    assert workspace._held["bytes"] == 6 * 2 ** 20  # the newest kept, the older ones dropped
    assert workspace.take((3,) + BIG, np.float32).ctypes.data == addresses[2]
    assert workspace._held["bytes"] == 0  # the 2 and 4 MB arrays were dropped, not kept


def test_eviction_passes_over_a_shape_whose_arrays_were_all_taken(monkeypatch):
    monkeypatch.setattr(workspace, "MAX_BYTES", 5 * 2 ** 20)
    first = np.empty(BIG, np.float32)
    workspace.give_back([first])
    del first
    taken = workspace.take(BIG, np.float32)  # the oldest shape is now an empty entry
    workspace.give_back([np.empty((1024, 1024), np.float32), np.empty((1024, 1025), np.float32)])
    assert workspace._held["bytes"] <= workspace.MAX_BYTES
    assert sum(a.nbytes for pool in workspace._free.values() for a in pool) == workspace._held["bytes"]
    assert taken.shape == BIG
