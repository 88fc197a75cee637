"""Background batch preparation: a few daemon threads and an ordered hand-out.

    >>> pool = WorkerPool(2)
    >>> job = pool.submit(make_batch, 0, 7)
    >>> batch = job.result()       # re-raises a worker's exception with its traceback

The threads are daemons (they never keep the interpreter alive) and hold no
reference to the iterator between jobs, so a dropped iterator is collected
and its threads stop (``close``). What runs in them (numba kernels with
``nogil``, Pillow decoding and resizing) releases the GIL.
"""
import queue
import threading


class Job:
    """One queued call; ``result()`` waits for it."""

    __slots__ = ("fn", "args", "done", "value", "error")

    def __init__(self, fn, args):
        self.fn, self.args = fn, args
        self.done = threading.Event()
        self.value = self.error = None

    def run(self):
        try:
            self.value = self.fn(*self.args)
        except BaseException as e:  # handed to the caller, who re-raises it
            self.error = e
        finally:
            self.fn = self.args = None  # drop references (the iterator) as soon as possible
            self.done.set()

    def result(self):
        self.done.wait()
        if self.error is not None:
            raise self.error.with_traceback(self.error.__traceback__)
        return self.value


def _work(jobs):
    while True:
        job = jobs.get()
        if job is None:
            return
        job.run()


class WorkerPool:
    """``workers`` daemon threads running submitted jobs first come, first served."""

    def __init__(self, workers):
        self.jobs = queue.SimpleQueue()
        self.threads = [threading.Thread(target=_work, args=(self.jobs,), daemon=True, name=f"tlkit-augment-{i}")
                        for i in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, fn, *args):
        job = Job(fn, args)
        self.jobs.put(job)
        return job

    def close(self):
        for _ in self.threads:
            self.jobs.put(None)
