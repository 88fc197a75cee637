"""tlkit's worker threads: the threads that take ``threads.run_chunks`` chunks beside the caller.

Each worker has an inbox of its own (a ``queue.SimpleQueue``): a job is posted to a chosen worker in
one C call, and the worker blocks on its inbox between jobs (never spins). No futures, no shared
queue, no per-job Python objects beyond the job itself: an empty ``run_chunks`` on two threads
took 8-13 us against 21-27 us through ``concurrent.futures.ThreadPoolExecutor`` (BENCHMARKS.md,
"Batch 1: where the gap is").

    pool = worker_pool.get(2)         # at least 2 workers (a forked child builds its own)
    pool.post(1, job, slot)           # worker 1 runs job.run_in_pool(slot)
"""
import os
import queue
import threading

from tlkit.utils import pinning

_state = {"pool": None}
_lock = threading.Lock()


class _Worker:
    def __init__(self, index):
        self.inbox = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"tlkit-worker-{index}", daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            job, slot = self.inbox.get()
            job.run_in_pool(slot)
            del job  # not kept alive while waiting for the next


class Pool:
    """Workers numbered 1..n (the caller is slot 0); it only grows."""

    def __init__(self):
        self.pid = os.getpid()
        self.workers = [None]  # index 0: the caller

    def grow(self, count):
        while len(self.workers) <= count:
            self.workers.append(_Worker(len(self.workers)))

    def post(self, index, job, slot):
        self.workers[index].inbox.put((job, slot))


def get(count):
    """This process's pool with at least ``count`` workers. A forked child inherits the pool object but
    not its threads: it builds its own."""
    pool = _state["pool"]
    if pool is None or pool.pid != os.getpid() or len(pool.workers) <= count:
        with _lock:
            pool = _state["pool"]
            if pool is None or pool.pid != os.getpid():
                pool = _state["pool"] = Pool()
                pinning.new_pool()
            pool.grow(count)
    return pool
