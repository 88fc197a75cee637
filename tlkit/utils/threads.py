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
    ``matmul`` splits each large product over tlkit's own threads, which block (never spin) while idle.
Thread count: numba's (``numba.get_num_threads()``, NUMBA_NUM_THREADS), one number for both.

    from tlkit.utils.threads import matmul
    matmul(a, b, out)          # out = a @ b, 2-D (rows split) or 3-D stacks (stack split)
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Environment defaults tlkit sets at import (a user's own setting wins). Read by libgomp when it
# loads, i.e. before numba's first parallel kernel.
ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}

# Products smaller than this run on the calling thread: a hand-off costs ~20-50 us.
MIN_SPLIT_FLOPS = 4_000_000

_state = {"pool": None, "workers": 0, "pid": None, "blas_limited": False}
_lock = threading.Lock()


def set_env_defaults(environ=os.environ):
    for key, value in ENV_DEFAULTS.items():
        environ.setdefault(key, value)


def num_threads():
    """The number of cores tlkit works on: numba's thread count (NUMBA_NUM_THREADS caps it)."""
    import numba

    return numba.get_num_threads()


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


def _pool(workers):
    with _lock:
        # A forked child inherits the pool object but not its threads: it builds its own.
        if _state["workers"] != workers or _state["pid"] != os.getpid():
            if _state["pool"] is not None and _state["pid"] == os.getpid():
                _state["pool"].shutdown(wait=True)
            _state["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="tlkit-blas")
            _state["workers"], _state["pid"] = workers, os.getpid()
        return _state["pool"]


def _product(a, b, out):
    # np.dot writes a C-contiguous 2-D out directly; np.matmul covers strided outs and stacks.
    if a.ndim == 2 and out.flags.c_contiguous:
        np.dot(a, b, out=out)
    else:
        np.matmul(a, b, out=out)


def matmul(a, b, out):
    """out[...] = a @ b for float32 a (m, k) @ b (k, n), or stacks a (s, m, k) @ b (s, k, n); the
    rows (2-D) or the stack (3-D) are cut into one part per thread, the caller doing the first."""
    limit_blas()
    flops = 2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * (a.shape[0] if a.ndim == 3 else 1)
    parts = min(num_threads(), a.shape[0])
    if parts < 2 or flops < MIN_SPLIT_FLOPS:
        _product(a, b, out)
        return out
    bounds = np.linspace(0, a.shape[0], parts + 1).astype(int)
    stacked = a.ndim == 3
    pool = _pool(parts - 1)
    futures = [pool.submit(_product, a[lo:hi], b[lo:hi] if stacked else b, out[lo:hi])
               for lo, hi in zip(bounds[1:-1], bounds[2:])]
    _product(a[:bounds[1]], b[:bounds[1]] if stacked else b, out[:bounds[1]])
    for future in futures:
        future.result()
    return out


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
