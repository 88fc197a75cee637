"""How tlkit shares the cores: numba's parallel kernels and BLAS products take turns, and no thread
ever busy-waits, so two tlkit processes (or tlkit and any other busy process) share a machine
instead of fighting over it.

Why: numba's OpenMP workers spin for a while after each parallel region by default, and OpenBLAS's
workers busy-wait ~0.1 s after every product. In one process each pool steals the cores from the
other's next step; across processes, the spinning threads take the other process's share.
So:
  - numba's OpenMP workers sleep as soon as a region ends: OMP_WAIT_POLICY=PASSIVE, which
    tlkit/__init__ sets (from ENV_DEFAULTS) before any kernel loads libgomp;
  - BLAS runs single-threaded (``limit_blas()``, via threadpoolctl, at tlkit's first product; this
    holds for the whole process, so a user's own numpy products then run on one thread too);
    ``matmul`` splits each large product over tlkit's own threads (``worker_pool``), which block
    while idle; only during one inference forward (a ``worker_pool.session``) does a worker poll
    between the forward's steps, and the caller for its chunks' end (``worker_pool.SPIN_US`` at most).
Thread count: numba's (``numba.get_num_threads()``, NUMBA_NUM_THREADS), one number for both.
When it equals the CPUs the caller may use, the threads of a whole-graph run (``batch_split``) each
run on a CPU of its own (``pinning``): a busy neighbour then shares a core with one of them instead
of keeping one to itself.

    from tlkit.utils.threads import matmul
    matmul(a, b, out)          # out = a @ b, 2-D (rows split) or 3-D stacks (stack split)
    matmul_tn(a, b, out)       # out = a.T @ b, the long shared dimension split (weight gradients)
"""
import ctypes
import os
import threading
import time

import numpy as np

from tlkit.utils import pinning, worker_pool

# Environment defaults tlkit sets at import (a user's own setting wins). Read by libgomp when it
# loads, i.e. before numba's first parallel kernel.
ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}

# Products smaller than this run on the calling thread: a hand-off costs ~20-50 us.
MIN_SPLIT_FLOPS = 4_000_000
# Chunks per thread in a split: more balance when a thread is descheduled, more per-call overhead
# (~10 us each) and smaller BLAS calls. Chunks of a product are kept above MIN_CHUNK_FLOPS.
CHUNKS_PER_THREAD = 4
MIN_CHUNK_FLOPS = 2_000_000
# During a worker session (``worker_pool.session``: one inference forward, the workers polling between
# its steps) a split costs no wake-up: bars are SESSION_SPLIT_FLOPS, one chunk per thread.
SESSION_SPLIT_FLOPS = 2_000_000
SESSION_CHUNKS_PER_THREAD = 1
# Column blocks of a product split by output channels are multiples of this (whole SIMD vectors).
SESSION_COLUMN_BLOCK = 16
# numba threading layers whose parallel kernels may be called from several threads at once
# (workqueue may not: it aborts on concurrent launches).
CONCURRENT_LAYERS = ("omp", "tbb")

_state = {"blas_limited": False, "layer": None, "read_threads": None, "write_threads": None, "max_threads": 1}
_lock = threading.Lock()


def set_env_defaults(environ=os.environ):
    for key, value in ENV_DEFAULTS.items():
        environ.setdefault(key, value)


def num_threads():
    """The number of cores tlkit works on: numba's thread count for the calling thread (NUMBA_NUM_THREADS
    caps it; ``numba.set_num_threads`` is per thread). Called several times a training step:
    ``numba.get_num_threads`` takes two of numba's locks every call (one of them a process-shared
    semaphore, slow when another thread holds it), so once numba's threads are launched its
    thread-local count is read directly."""
    read = _state["read_threads"]
    if read is not None:
        count = read()
        if count > 0:
            return count
    import numba

    count = numba.get_num_threads()  # launches numba's threads on the first call
    _bind_numba_counts()
    return count


def set_numba_threads(count):
    """``numba.set_num_threads(count)`` for the calling thread, without numba's locks once its threads
    are launched (run_chunks sets and restores the count around every call). count is kept within
    1 .. NUMBA_NUM_THREADS, as numba's own function checks: the direct writer does not check, and a
    larger count would send numba's parallel kernels to threads that do not exist (a count read from a
    patched ``num_threads``, as in tests, once did)."""
    write = _state["write_threads"]
    if write is not None:
        write(min(max(int(count), 1), _state["max_threads"]))
        return
    import numba

    numba.set_num_threads(count)
    _bind_numba_counts()


def _bind_numba_counts():
    """Bind numba's thread-local count reader and writer (C functions its thread launch loads; numba
    0.5x-0.6x) once the launch happened; without them the public, locking functions stay in use.
    They are rebound as PYFUNCTYPE: numba's ctypes wrappers release the GIL on every call, and taking
    it back while another tlkit thread runs Python costs up to a switch interval (ms) each time."""
    from numba.np.ufunc import parallel

    read, write = getattr(parallel, "_get_num_threads", None), getattr(parallel, "_set_num_threads", None)
    if _state["read_threads"] is not None or not getattr(parallel, "_is_initialized", False) \
            or not isinstance(read, ctypes._CFuncPtr) or not isinstance(write, ctypes._CFuncPtr):
        return
    import numba

    _state["max_threads"] = numba.config.NUMBA_NUM_THREADS
    _state["write_threads"] = ctypes.PYFUNCTYPE(None, ctypes.c_int)(ctypes.cast(write, ctypes.c_void_p).value)
    _state["read_threads"] = ctypes.PYFUNCTYPE(ctypes.c_int)(ctypes.cast(read, ctypes.c_void_p).value)


def limit_blas():
    """Run every BLAS library loaded in this process on one thread (once; later calls are free).
    A threaded BLAS's workers would busy-wait between tlkit's products; tlkit splits large
    products over its own blocking threads instead (``matmul``)."""
    if _state["blas_limited"]:
        return
    with _lock:
        if not _state["blas_limited"]:
            from threadpoolctl import threadpool_limits

            threadpool_limits(1, user_api="blas")
            _state["blas_limited"] = True


def product(a, b, out):
    """out[...] = a @ b on the calling thread (BLAS on one thread once ``limit_blas`` ran)."""
    # np.dot writes a C-contiguous 2-D out directly; np.matmul covers strided outs and stacks.
    if a.ndim == 2 and out.flags.c_contiguous:
        np.dot(a, b, out=out)
    else:
        np.matmul(a, b, out=out)


def matmul(a, b, out):
    """out[...] = a @ b for float32 a (m, k) @ b (k, n), or stacks a (s, m, k) @ b (s, k, n); the
    rows (2-D) or the stack (3-D) are cut into chunks shared by the threads (``run_chunks``)."""
    limit_blas()
    rows = a.shape[0]
    flops = 2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * (rows if a.ndim == 3 else 1)
    parts = min(num_threads(), rows)
    if parts < 2 or flops < session_bar(MIN_SPLIT_FLOPS):
        product(a, b, out)
        return out
    chunks = int(min(rows, parts * chunks_per_thread(), max(parts, flops // max(MIN_CHUNK_FLOPS, 1))))
    stacked = a.ndim == 3

    def part(slot, lo, hi):
        product(a[lo:hi], b[lo:hi] if stacked else b, out[lo:hi])

    run_chunks(np.linspace(0, rows, chunks + 1).astype(int), part, parts)
    return out



def matmul_tn(a, b, out, b_sums=None, per_thread=None):
    """out[...] = a.T @ b for 2-D a (k, m), b (k, n) with a long shared k (weight gradients summed over
    many rows): k is cut into chunks shared by the threads, each thread adding its chunks' products in
    its own buffer (its first chunk's written there directly), summed at the end. Cutting k reads each
    operand once; cutting the rows of a.T (``matmul``) would pack all of b once per chunk. ``b_sums``
    (n,), if given, gets b's column sums (a bias gradient), each chunk's summed by the thread that
    multiplies it, while it is in cache. ``per_thread``: chunks a thread (CHUNKS_PER_THREAD by default)."""
    limit_blas()
    k = a.shape[0]
    flops = 2 * k * a.shape[1] * b.shape[1]
    parts = min(num_threads(), k)
    if parts < 2 or flops < MIN_SPLIT_FLOPS:
        product(a.T, b, out)
        if b_sums is not None:
            np.sum(b, axis=0, out=b_sums)
        return out
    per_thread = CHUNKS_PER_THREAD if per_thread is None else per_thread
    chunks = int(min(k, parts * per_thread, max(parts, flops // max(MIN_CHUNK_FLOPS, 1))))
    sums = np.empty((parts,) + out.shape, out.dtype)
    used = [False] * parts
    scratch = [None] * parts
    col_sums = None if b_sums is None else np.zeros((parts, b.shape[1]), b_sums.dtype)

    def part(slot, lo, hi):
        if used[slot]:
            if scratch[slot] is None:
                scratch[slot] = np.empty(out.shape, out.dtype)
            product(a[lo:hi].T, b[lo:hi], scratch[slot])
            sums[slot] += scratch[slot]
        else:
            product(a[lo:hi].T, b[lo:hi], sums[slot])
            used[slot] = True
        if col_sums is not None:
            col_sums[slot] += b[lo:hi].sum(axis=0)

    run_chunks(np.linspace(0, k, chunks + 1).astype(int), part, parts)
    np.sum(sums if all(used) else sums[[i for i in range(parts) if used[i]]], axis=0, out=out)
    if b_sums is not None:
        np.sum(col_sums, axis=0, out=b_sums)
    return out


def chunks_can_run_numba():
    """True when numba kernels may run inside ``run_chunks`` work (on several threads at once)."""
    if _state["layer"] is None:
        import numba

        numba.get_num_threads()  # launches numba's threads, which picks the layer
        _state["layer"] = numba.threading_layer()
    return _state["layer"] in CONCURRENT_LAYERS


def session_bar(flops):
    """A split's bar of ``flops``, or SESSION_SPLIT_FLOPS during a worker session."""
    return min(flops, SESSION_SPLIT_FLOPS) if worker_pool.awake() else flops


def chunks_per_thread():
    """Chunks per thread in a split: CHUNKS_PER_THREAD, or SESSION_CHUNKS_PER_THREAD during a session."""
    return SESSION_CHUNKS_PER_THREAD if worker_pool.awake() else CHUNKS_PER_THREAD


def by_output_channels(weight_floats, input_floats, columns):
    """During a worker session, whether a layer's product shares its ``columns`` output channels
    between the threads (each reads part of the weights) rather than its rows (each reads all of them):
    when its weights outweigh its input and there are at least SESSION_COLUMN_BLOCK a thread."""
    return (worker_pool.awake() and weight_floats > input_floats
            and columns >= num_threads() * SESSION_COLUMN_BLOCK)


def column_blocks(columns, parts, width=None):
    """Bounds cutting ``columns`` into at most ``parts`` blocks, each a multiple of ``width`` (default
    SESSION_COLUMN_BLOCK) but the last."""
    width = SESSION_COLUMN_BLOCK if width is None else width
    blocks = -(-columns // width)
    return sorted({min(columns, width * (blocks * i // parts)) for i in range(parts + 1)})


class _Chunks:
    """One run_chunks call: threads take chunk numbers in turn until none is left; the caller
    waits for the chunks to be done, not for the workers (one may not have started yet)."""

    def __init__(self, bounds, work, cpus=None):
        self.bounds, self.work, self.cpus = bounds, work, cpus
        self.taken = 0
        self.left = len(bounds) - 1
        self.error = None
        self.lock = threading.Lock()
        self.done = threading.Lock()  # held until the last chunk is done
        self.done.acquire()
        # During a session, np.int64 [last chunk done, a worker started, the worker's post count]
        # (spin.wait_for_end); otherwise None
        self.flags = None

    def run(self, slot):
        while True:
            with self.lock:
                i = self.taken
                self.taken += 1
            if i >= len(self.bounds) - 1:
                return
            if self.error is None:  # after an error the rest are only counted off
                try:
                    self.work(slot, self.bounds[i], self.bounds[i + 1])
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                    self.error = self.error or e
            with self.lock:
                self.left -= 1
                last = self.left == 0
            if last:
                self.work = None  # a worker may hold this job a while yet: not what the work references
                if self.flags is not None:
                    self.flags[0] = 1
                self.done.release()

    def run_in_pool(self, slot):
        if self.flags is not None:
            self.flags[1] = 1
        pinning.pin_pool_thread(self.cpus)
        # Per job: a worker's numba kernels run on it alone (work nested in a chunk may restore a count).
        set_numba_threads(1)
        self.run(slot)


def run_chunks(bounds, work, parts, pin=False):
    """work(slot, bounds[i], bounds[i + 1]) for every i, on ``parts`` threads (the caller and
    parts - 1 of tlkit's worker threads), each thread taking the next chunk when free. slot
    (0 .. parts - 1) names the thread running the call, e.g. to index per-thread scratch; numba
    kernels called from work run on that thread alone. The first exception raised by work is
    raised here once every chunk is done or skipped. ``pin``: each thread on a CPU of its own
    (``pinning``), for long independent chunks such as whole-graph groups of images."""
    if parts == 2 and len(bounds) == 3 and getattr(work, "native", None) is not None:  # a session's job table
        before = num_threads()
        set_numba_threads(1)
        try:
            if worker_pool.run_posted(work, bounds):
                return
        finally:
            set_numba_threads(before)
    job = _Chunks(list(bounds), work, pinning.cpus_to_pin(parts) if pin else None)
    if job.left <= 0:
        return
    polls = 0
    if parts > 1:
        pool = worker_pool.get(parts - 1)
        if parts == 2 and worker_pool.awake():  # the worker polls: the caller polls for the end too, a while
            from tlkit.utils import spin

            polls = spin.polls(worker_pool.SPIN_US)
            job.flags = np.zeros(3, np.int64)
        for slot in range(1, parts):
            posted = pool.post(slot, job, slot)
        if polls:
            job.flags[2] = posted
    before = num_threads()
    set_numba_threads(1)
    started = time.perf_counter()
    try:
        if job.cpus is None:
            job.run(0)
        else:
            with pinning.caller_pinned(job.cpus):
                job.run(0)
    finally:
        set_numba_threads(before)
    own = time.perf_counter() - started if polls else 0.0
    if polls and not spin.wait_for_end(job.flags, pool.workers[1].flags, worker_pool.PARKED, polls, spin.YIELD_EVERY):
        job.done.acquire()
        # waited (polled, then blocked) longer than its own share took: the worker was off its CPU
        worker_pool.note_late(time.perf_counter() - started > 2 * own)
    else:
        job.done.acquire()  # blocks until the last chunk is done
    if job.error is not None:
        raise job.error


def info():
    """What this process runs on: numba's threading layer and thread count, and each loaded
    threadpool (threadpoolctl's view: BLAS and OpenMP libraries, their thread counts)."""
    import numba
    from threadpoolctl import threadpool_info

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet, so no layer is chosen
        layer = f"not launched yet (configured: {numba.config.THREADING_LAYER})"
    return {"numba_threading_layer": layer, "numba_threads": numba.get_num_threads(),
            "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                   "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                                                   "OPENBLAS_L2_SIZE")},
            "threadpools": threadpool_info()}
