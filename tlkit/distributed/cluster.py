"""A Dask client for ``--scheduler tcp://HOST:PORT`` (an existing cluster) or ``--workers N`` (a local
cluster of N worker processes sharing this machine's cores)."""
import contextlib
import os

# Dask's diagnostics wake every local process many times a second (the worker's statistical profiler
# every 10 ms, each event loop's tick every 20 ms, memory checks every 100 ms): CPU time taken from the
# workers once they fill the cores. A local cluster made for a job needs them seldom: the profile (a
# dashboard view) off, the others less often (docs/distributed.md).
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def local_threads(workers, cores=None):
    """Threads per worker when ``workers`` processes share the machine's cores (at least one each)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


@contextlib.contextmanager
def connect(scheduler=None, workers=None, threads_per_worker=None):
    """A ``distributed.Client``, closed (and its local cluster stopped) on leaving."""
    from distributed import Client, LocalCluster

    if scheduler and workers:
        raise ValueError("give either --scheduler (an existing cluster) or --workers (a local one), not both.")
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    import dask

    threads = threads_per_worker or local_threads(workers)
    # Dask sets MALLOC_TRIM_THRESHOLD_ in its workers; set at all, it stops glibc from adapting its mmap
    # threshold, and the engine's large buffers come back as fresh pages on every call (docs/distributed.md).
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
               if k != "MALLOC_TRIM_THRESHOLD_"}
    # The dashboard (if bokeh is installed) on a free port: several local clusters may run on one machine.
    # Dask's Nanny writes its workers' settings (OMP_NUM_THREADS=1, ...) into this process's os.environ
    # before spawning them; left there, every process the driver starts later (a warm-up compile, a second
    # cluster) would run single-threaded. The driver's environment is put back once the workers run.
    driver_environ = dict(os.environ)
    try:
        with dask.config.set({**LOCAL_CLUSTER_CONFIG, "distributed.nanny.pre-spawn-environ": environ}), \
                LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                             dashboard_address=":0") as cluster, Client(cluster) as client:
            restore_environ(driver_environ)
            yield client
    finally:
        restore_environ(driver_environ)


def restore_environ(saved):
    """os.environ made equal to ``saved`` (keys added since removed, changed ones put back)."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)
