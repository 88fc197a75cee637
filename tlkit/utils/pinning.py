"""The threads of a ``threads.run_chunks(..., pin=True)`` call each on a CPU of its own, when tlkit's
threads are as many as the CPUs the calling thread may use. Whole-graph runs over groups of images
(``engine.batch_split``) ask for it.

Why: Linux wakes a thread on or near the CPU of the thread that woke it, so tlkit's threads, which
wake each other, tend to share one core, and a busy thread of another process keeps the other core
to itself. Measured on SqueezeNet b32 beside a single-threaded busy loop (BENCHMARKS.md "## Sharing
the machine"): unpinned, tlkit kept 57-82% of its solo throughput and the loop 58-95% of its own;
pinned, tlkit 65-92% and the loop 48-61% (once 74%); beside torch and beside a second tlkit process the bars
held either way. Per-layer jobs (a conv layer's chunks, a product's) stay unpinned: they meet at
every layer, and a pinned thread that shares its core with a spinning peer's thread cannot move to
a freer one (VGG16 b8 beside torch: tlkit 37-43% against torch's 53-57% pinned, 47-50% against
46-49% unpinned).
Only when the counts are equal: with fewer threads than CPUs, two processes would crowd onto the
same first CPUs while the others idle. The caller's own affinity is restored when its chunks are
done; a pool thread keeps its CPU until it runs an unpinned job.
TLKIT_PIN_THREADS=0 in the environment turns pinning off.
"""
import contextlib
import os
import threading

_state = {"active": 0, "next": 0}
_lock = threading.Lock()
_local = threading.local()  # per pool thread: the CPU it is pinned to


def cpus_to_pin(parts):
    """The sorted CPUs to pin ``parts`` threads to (the caller on the first), or None."""
    if parts < 2 or os.environ.get("TLKIT_PIN_THREADS", "1") == "0" or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus if len(cpus) == parts else None


@contextlib.contextmanager
def caller_pinned(cpus):
    """The calling thread on cpus[0] inside the block, unless another thread of this process is in
    such a block already (both would then crowd onto one CPU); its affinity is restored after."""
    with _lock:
        first = _state["active"] == 0
        _state["active"] += 1
    saved = None
    try:
        if cpus and first:
            saved = os.sched_getaffinity(0)
            if not _set_affinity({cpus[0]}):
                saved = None
        yield
    finally:
        if saved is not None:
            _set_affinity(saved)
        with _lock:
            _state["active"] -= 1


def pin_pool_thread(cpus):
    """Pin the calling pool thread, once, to a CPU of cpus[1:] of its own (pool threads in the order
    they first run a chunk); ``new_pool`` starts that order again."""
    if not cpus:  # pinning turned off since: back to the CPUs the thread had
        if getattr(_local, "cpu", None) is not None and _set_affinity(_local.unpinned):
            _local.cpu = None
        return
    index = getattr(_local, "index", None)
    if index is None:
        with _lock:
            index = _local.index = _state["next"]
            _state["next"] += 1
    cpu = cpus[1 + index % (len(cpus) - 1)]
    if getattr(_local, "cpu", None) != cpu:
        unpinned = os.sched_getaffinity(0) if getattr(_local, "cpu", None) is None else _local.unpinned
        if _set_affinity({cpu}):
            _local.cpu, _local.unpinned = cpu, unpinned


def new_pool():
    with _lock:
        _state["next"] = 0


def _set_affinity(cpus):
    try:
        os.sched_setaffinity(0, cpus)
        return True
    except OSError:  # e.g. a CPU outside the container's cpuset: run unpinned
        return False
