"""tlkit's worker threads: the threads that take ``threads.run_chunks`` chunks beside the caller.

Each worker has an inbox of its own (a ``queue.SimpleQueue``): a job is posted to a chosen worker in
one C call, and the worker blocks on its inbox between jobs. No futures, no shared queue, no per-job
Python objects beyond the job itself: an empty ``run_chunks`` on two threads took 8-13 us against
21-27 us through ``concurrent.futures.ThreadPoolExecutor`` (BENCHMARKS.md, "Batch 1: where the gap is").

A session (``with session(workers):``, one inference forward) keeps the workers awake between the
forward's steps: on entry a blocked worker is woken once; after each job a worker polls for the next
one without the GIL (``spin.wait_for_job``) for up to SPIN_US before it blocks, and when the last open
session ends the polls stop at once. Waking a worker costs tens of microseconds on a virtual machine,
about as long as a step of a batch-1 forward; outside a session no thread ever polls, so an idle tlkit
process uses no CPU.

    pool = worker_pool.get(2)         # at least 2 workers (a forked child builds its own)
    pool.post(1, job, slot)           # worker 1 runs job.run_in_pool(slot)
    with worker_pool.session(1):      # worker 1 polls between jobs until the block ends
        ...
"""
import contextlib
import os
import queue
import threading

import numpy as np

from tlkit.utils import pinning

# How long a worker polls for its next job after each one during a session before it blocks (us).
SPIN_US = 200
# Off by default (TLKIT_WORKER_SESSIONS=1 turns them on). On, a forward opens one only while the other
# processes leave its cores free and sessions are measured faster for its graph (``session_trials.forward``,
# asked by ``small_steps.session``). Measured on merged main (2026-11-27, AMD EPYC, `scripts/ab_revisions.py`):
# SqueezeNet b1 0.87x the session-free route of 1764f1e with sessions on, 1.04x off (the trials' forwards in a
# losing session cost a short run); opened whatever the load, sessions missed issue 16's batch-1 sharing bars.
SESSIONS = os.environ.get("TLKIT_WORKER_SESSIONS", "0") == "1"
# In a session a worker serves a job table (utils/job_table.py: chunks posted as native calls, run without
# the GIL) beside its inbox; False: it only polls its inbox (each chunk a Python call). Off by default
# (TLKIT_WORKER_JOBS=1 turns it on), with SESSIONS: the job cfuncs load from numba's cache in a fresh process
# (SqueezeNet b1's first forward 0.45 s with jobs, 0.33 s without), but on an Intel Xeon (2026-11-27,
# BENCHMARKS.md "branch jobs-cache") sessions with jobs were 1.04-1.08x in one process and beside a busy
# loop missed the sharing bar that the session-free route met.
JOBS = os.environ.get("TLKIT_WORKER_JOBS", "0") == "1"
# A worker's flags (int64, one cache line each): jobs posted to it, the sessions open, and the jobs
# it had taken when it last began to poll (it holds no GIL while polling).
POSTED, OPEN, PARKED = 0, 8, 16
# ... and the sessions opened so far (a worker serving its job table polls SPIN_US from the latest).
OPENED = 24

# When the callers of a session waited on a late worker (one off its CPU: another process busy on it)
# in LATE_SPLITS of its splits, the next BACKOFF_FORWARDS sessions are not opened: with the cores
# shared, steps on the calling thread alone lose less than steps waiting for a descheduled worker.
LATE_SPLITS = 2
BACKOFF_FORWARDS = 32

_state = {"pool": None, "sessions": 0, "late": 0, "backoff": 0}
_lock = threading.Lock()


class _Worker:
    def __init__(self, index):
        self.inbox = queue.SimpleQueue()
        self.flags = np.zeros(32, np.int64)
        self.flags[OPEN] = _state["sessions"]
        self.blocked = threading.Event()  # set while it blocks on its inbox (observable by tests)
        self.jobs = np.zeros(64, np.int64)  # its job table (job_table.ROW int64s used)
        self.jobs_lock = threading.Lock()  # held by the one caller posting to the table
        self.served = 0  # native jobs it ran (observable by tests)
        self.one_thread = False  # numba's thread count set to 1 on this thread
        self.thread = threading.Thread(target=self._loop, name=f"tlkit-worker-{index}", daemon=True)
        self.thread.start()

    def post(self, job, slot):
        """Posts job to this worker; returns the number of jobs posted to it so far."""
        self.inbox.put((job, slot))
        self.flags[POSTED] += 1
        return int(self.flags[POSTED])

    def _loop(self):
        taken = 0  # jobs taken from the inbox
        while True:
            if self.flags[OPEN] > 0 and self.inbox.empty():
                from tlkit.utils import job_table, spin  # numba: loaded by the first session, not at import

                if JOBS:
                    if not self.one_thread:  # the jobs' numba kernels run on this thread alone (a per-thread count)
                        import numba

                        numba.set_num_threads(1)
                        self.one_thread = True
                    self.served += job_table.serve(self.flags, self.jobs, POSTED, OPEN, PARKED, OPENED, taken,
                                                   spin.polls(SPIN_US), spin.YIELD_EVERY)
                else:
                    spin.wait_for_job(self.flags, POSTED, taken, OPEN, PARKED, spin.polls(SPIN_US), spin.YIELD_EVERY)
            if self.inbox.empty():
                self.blocked.set()
                if self.flags[OPEN] > 0 and self.jobs[0] != 0:  # a job posted as it left its table: served
                    self.blocked.clear()
                    continue
                job, slot = self.inbox.get()
                self.blocked.clear()
            else:
                job, slot = self.inbox.get()
            taken += 1
            job.run_in_pool(slot)
            del job  # not kept alive while waiting for the next


class _Wake:
    """A job that does nothing: posted to start a blocked worker's polls."""

    @staticmethod
    def run_in_pool(slot):
        pass


class Pool:
    """Workers numbered 1..n (the caller is slot 0); it only grows."""

    def __init__(self):
        self.pid = os.getpid()
        self.workers = [None]  # index 0: the caller

    def grow(self, count):
        while len(self.workers) <= count:
            self.workers.append(_Worker(len(self.workers)))

    def post(self, index, job, slot):
        """Posts job to worker ``index``; returns the number of jobs posted to it so far."""
        return self.workers[index].post(job, slot)


def get(count):
    """This process's pool with at least ``count`` workers. A forked child inherits the pool object but
    not its threads: it builds its own."""
    pool = _state["pool"]
    if pool is None or pool.pid != os.getpid() or len(pool.workers) <= count:
        with _lock:
            pool = _state["pool"]
            if pool is None or pool.pid != os.getpid():
                pool = _state["pool"] = Pool()
                _state["sessions"] = 0  # a forked child's: its parent's sessions are not its own
                pinning.new_pool()
            pool.grow(count)
    return pool


def awake():
    """Whether a session is open in this process (its workers poll between jobs)."""
    return _state["sessions"] > 0


@contextlib.contextmanager
def session(workers):
    """Workers 1..``workers`` poll for jobs between the block's steps (nothing when workers < 1 or
    SESSIONS is False). Sessions nest and may be open on several threads at once: the polls stop
    when the last one ends, also by an exception."""
    with _lock:
        skip = _state["backoff"] > 0 and _state["sessions"] == 0
        _state["backoff"] -= skip
    if workers < 1 or not SESSIONS or skip:
        yield
        return
    pool = get(workers)
    with _lock:
        if _state["sessions"] == 0:
            _state["late"] = 0
        _state["sessions"] += 1
        _set_open(pool)
        for worker in pool.workers[1:]:
            worker.flags[OPENED] += 1
    try:
        for worker in pool.workers[1:workers + 1]:
            if worker.blocked.is_set():
                worker.post(_Wake, 0)
        yield
    finally:
        with _lock:
            _state["sessions"] = max(0, _state["sessions"] - 1)
            _set_open(pool)
            if _state["sessions"] == 0 and _state["late"] >= LATE_SPLITS:
                _state["backoff"] = BACKOFF_FORWARDS


def serves_jobs():
    """Whether worker 1 may take native jobs now (a session is open with JOBS on): the routes then build
    their chunks' posters (``work.native``, kernels/jobs.py)."""
    return JOBS and _state["sessions"] > 0


def run_posted(work, bounds):
    """Chunks bounds[0:2] on the caller and bounds[1:3] as worker 1's native job (``work.native``), when
    worker 1 serves its job table and no other caller is posting to it: True once both are done (the
    caller ran the job itself when the worker had not taken it). False: nothing was run."""
    pool = _state["pool"]
    if pool is None or pool.pid != os.getpid() or len(pool.workers) < 2:
        return False
    worker = pool.workers[1]
    if not worker.jobs_lock.acquire(False):
        return False
    from tlkit.utils import job_table, spin

    try:
        if not work.native(worker.jobs, bounds[1], bounds[2]):
            return False
        if worker.blocked.is_set():  # it left its table (a long step alone) before the post: woken
            worker.post(_Wake, 0)
        try:
            work(0, bounds[0], bounds[1])
        finally:
            taken_back = job_table.finish(worker.jobs, spin.YIELD_EVERY)  # nothing left posted, also after an error
        if taken_back:
            work(0, bounds[1], bounds[2])
    finally:
        worker.jobs_lock.release()
    return True


def note_late(late):
    """A caller's report after a split of a session for which it blocked: whether the worker was late."""
    if late:
        _state["late"] += 1


def _set_open(pool):
    for worker in pool.workers[1:]:
        worker.flags[OPEN] = _state["sessions"]
