"""run_chunks's contract on tlkit's own worker pool (tlkit/utils/worker_pool.py): every chunk exactly
once, a slot per thread within a call, errors raised after every chunk settled, calls nested inside
chunks and calls from several threads at once, and a forked child building its own workers.
No timings here: threads meet through barriers and events, bounded only against hangs."""
import os
import threading

import numpy as np
import pytest

from tlkit.utils import threads, worker_pool

HANG = 120  # seconds: only a hang reaches these bounds


def ran_chunks(bounds, parts, work=None):
    """[(slot, thread id, lo, hi)] of one run_chunks call."""
    seen, lock = [], threading.Lock()

    def record(slot, lo, hi):
        with lock:
            seen.append((slot, threading.get_ident(), lo, hi))
        if work is not None:
            work(slot, lo, hi)

    threads.run_chunks(bounds, record, parts)
    return seen


@pytest.mark.parametrize("parts", [1, 2, 3, 4])
def test_every_chunk_runs_once_and_each_slot_is_one_thread(parts):
    bounds = list(range(0, 200, 3)) + [200]
    seen = ran_chunks(bounds, parts)
    assert sorted((lo, hi) for _, _, lo, hi in seen) == list(zip(bounds[:-1], bounds[1:]))
    slot_threads = {}
    for slot, ident, _, _ in seen:
        slot_threads.setdefault(slot, set()).add(ident)
    assert set(slot_threads) <= set(range(parts))
    assert all(len(idents) == 1 for idents in slot_threads.values()), slot_threads
    assert len({next(iter(i)) for i in slot_threads.values()}) == len(slot_threads)  # a thread per slot
    assert slot_threads[0] == {threading.get_ident()}  # the caller is slot 0


def test_all_slots_work_at_once():
    """parts chunks that each wait until all have started: done only if parts threads run together."""
    parts = 3
    everyone = threading.Barrier(parts, timeout=HANG)
    seen = ran_chunks(list(range(parts + 1)), parts, lambda slot, lo, hi: everyone.wait())
    assert sorted(slot for slot, _, _, _ in seen) == list(range(parts))


def test_an_error_is_raised_after_every_chunk_settled_and_the_pool_still_works():
    started = threading.Event()
    finished = []

    def work(slot, lo, hi):
        if lo == 0:
            started.set()
            raise ValueError("chunk 0 failed")
        assert started.wait(HANG)
        finished.append(lo)

    # parts 2: the chunk raising may be the caller's or the worker's; either way all chunks settle first.
    with pytest.raises(ValueError, match="chunk 0 failed"):
        threads.run_chunks([0, 1, 2], work, parts=2)
    assert finished == [1] or finished == []  # the other chunk ran or was counted off, never left running
    seen = ran_chunks(list(range(7)), 2)
    assert sorted(lo for _, _, lo, _ in seen) == list(range(6))


def test_a_worker_error_reaches_the_caller():
    caller = threading.get_ident()
    gate = threading.Barrier(2, timeout=HANG)

    def work(slot, lo, hi):
        gate.wait()  # one chunk each: the worker surely runs one
        if threading.get_ident() != caller:
            raise KeyError("worker failed")

    with pytest.raises(KeyError, match="worker failed"):
        threads.run_chunks([0, 1, 2], work, parts=2)


def test_calls_nested_inside_chunks():
    out = np.zeros((6, 8), np.int64)

    def inner(row):
        def work(slot, lo, hi):
            out[row, lo:hi] += np.arange(lo, hi) + 100 * row
        return work

    def outer(slot, lo, hi):
        for row in range(lo, hi):
            threads.run_chunks([0, 3, 5, 8], inner(row), parts=2)

    threads.run_chunks([0, 2, 4, 6], outer, parts=2)
    assert np.array_equal(out, np.arange(8)[None, :] + 100 * np.arange(6)[:, None])


def test_calls_from_two_threads_at_once():
    results, errors = {}, []
    start = threading.Barrier(2, timeout=HANG)

    def caller(name):
        try:
            start.wait()
            for call in range(50):
                acc = np.zeros(40, np.int64)

                def work(slot, lo, hi):
                    acc[lo:hi] += 1

                threads.run_chunks(list(range(0, 41, 5)), work, parts=3)
                results.setdefault(name, []).append(bool((acc == 1).all()))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    callers = [threading.Thread(target=caller, args=(n,)) for n in ("a", "b")]
    for t in callers:
        t.start()
    for t in callers:
        t.join(HANG)
    assert not errors and not any(t.is_alive() for t in callers)
    assert results == {"a": [True] * 50, "b": [True] * 50}


def test_the_pool_grows_and_is_built_again_in_another_process(monkeypatch):
    pool = worker_pool.get(3)
    assert len(pool.workers) >= 4 and worker_pool.get(1) is pool
    monkeypatch.setattr(pool, "pid", -1)  # as a forked child sees its parent's pool
    fresh = worker_pool.get(1)
    assert fresh is not pool and fresh.pid == os.getpid()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_run_chunks_works_in_a_forked_child():
    ran_chunks(list(range(9)), 2)  # the parent's workers exist now
    pid = os.fork()
    if pid == 0:  # child: the inherited workers are gone; a hang is caught by the join bound
        out = []
        worker = threading.Thread(target=lambda: out.append(ran_chunks(list(range(9)), 2)), daemon=True)
        worker.start()
        worker.join(HANG)
        ok = not worker.is_alive() and sorted(lo for _, _, lo, _ in out[0]) == list(range(8))
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
