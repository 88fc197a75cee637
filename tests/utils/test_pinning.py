"""The threads of a pinned run_chunks call each on a CPU of their own, when they are as many as the CPUs
the caller may use; the caller's own CPUs restored after; off for unpinned calls, with TLKIT_PIN_THREADS=0
or other counts."""
import os
import threading

import pytest

from tlkit.utils import pinning, threads

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                                reason="needs a Linux process allowed on two or more CPUs")


def affinities_seen(parts, fail=False, pin=True):
    """{slot: CPU set the work saw} for one run_chunks call of ``parts`` chunks on ``parts`` threads;
    each chunk waits at a barrier until all have started, so every thread runs exactly one."""
    seen, lock, everyone = {}, threading.Lock(), threading.Barrier(parts, timeout=30)

    def work(slot, i, j):
        with lock:
            seen[slot] = frozenset(os.sched_getaffinity(0))
        everyone.wait()
        if fail and slot == 0:
            raise RuntimeError("work failed")

    threads.run_chunks(list(range(parts + 1)), work, parts, pin=pin)
    assert sorted(seen) == list(range(parts))
    return seen


def test_threads_pinned_to_cpus_of_their_own_and_the_caller_restored(monkeypatch):
    monkeypatch.delenv("TLKIT_PIN_THREADS", raising=False)
    allowed = frozenset(os.sched_getaffinity(0))
    cpus = sorted(allowed)
    seen = affinities_seen(len(cpus))
    assert seen[0] == frozenset({cpus[0]})
    pool_cpus = [s for slot, s in seen.items() if slot]
    assert all(len(s) == 1 and s <= allowed - {cpus[0]} for s in pool_cpus)
    assert len(frozenset().union(*pool_cpus)) == len(pool_cpus)  # one CPU each
    assert frozenset(os.sched_getaffinity(0)) == allowed  # the caller's CPUs are back


def test_the_caller_is_restored_when_work_fails(monkeypatch):
    monkeypatch.delenv("TLKIT_PIN_THREADS", raising=False)
    allowed = frozenset(os.sched_getaffinity(0))
    with pytest.raises(RuntimeError, match="work failed"):
        affinities_seen(len(allowed), fail=True)
    assert frozenset(os.sched_getaffinity(0)) == allowed


def test_no_pinning_when_turned_off_or_the_counts_differ(monkeypatch):
    allowed = frozenset(os.sched_getaffinity(0))
    affinities_seen(len(allowed))  # pins the pool threads
    seen = affinities_seen(len(allowed), pin=False)
    assert all(s == allowed for s in seen.values())  # an unpinned call frees them
    affinities_seen(len(allowed))
    monkeypatch.setenv("TLKIT_PIN_THREADS", "0")
    seen = affinities_seen(len(allowed))
    assert all(s == allowed for s in seen.values())
    monkeypatch.delenv("TLKIT_PIN_THREADS")
    assert pinning.cpus_to_pin(len(allowed) + 1) is None and pinning.cpus_to_pin(1) is None
    seen = affinities_seen(len(allowed) + 1)
    assert all(s == allowed for s in seen.values())


def test_a_second_caller_at_once_is_not_pinned_onto_the_same_cpu():
    cpus = sorted(os.sched_getaffinity(0))
    allowed = frozenset(cpus)
    inside, release, got = threading.Event(), threading.Event(), {}

    def first():
        with pinning.caller_pinned(cpus):
            got["first"] = frozenset(os.sched_getaffinity(0))
            inside.set()
            release.wait(30)

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(30)
    with pinning.caller_pinned(cpus):
        got["second"] = frozenset(os.sched_getaffinity(0))
    release.set()
    t.join()
    assert got == {"first": frozenset({cpus[0]}), "second": allowed}
