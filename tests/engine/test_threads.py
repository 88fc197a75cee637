"""tlkit's thread configuration (tlkit/utils/threads.py) and cold start: what importing tlkit
sets, what the first kernel call limits, that split products compute what numpy does (also in a
forked child), and how many kernel specialisations a SqueezeNet run compiles. No timings here."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tlkit.utils import threads

threadpoolctl = pytest.importorskip("threadpoolctl")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_python(code, **env):
    full = dict(os.environ, PYTHONPATH=REPO)
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


IMPORT_ONLY = """
import json, os, numpy, numba, threadpoolctl
before = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
import tlkit
from tlkit.engine.kernels import conv, winograd
try:
    layer = numba.threading_layer()
except ValueError:
    layer = None
compiled = sum(len(f.signatures) for m in (conv, winograd) for f in vars(m).values() if hasattr(f, "signatures"))
after = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
print(json.dumps({"wait": os.environ.get("OMP_WAIT_POLICY"), "layer": layer, "compiled": compiled,
                  "blas_before": before, "blas_after": after}))
"""


def test_import_sets_passive_openmp_and_touches_nothing_else():
    got = run_python(IMPORT_ONLY, OMP_WAIT_POLICY=None, OPENBLAS_NUM_THREADS="2")
    assert got["wait"] == "PASSIVE"
    assert got["layer"] is None, "importing tlkit launched numba's thread pool"
    assert got["compiled"] == 0, "importing tlkit compiled kernels"
    assert got["blas_after"] == got["blas_before"], "importing tlkit changed BLAS's threads"


def test_import_keeps_the_users_own_wait_policy():
    assert run_python(IMPORT_ONLY, OMP_WAIT_POLICY="ACTIVE")["wait"] == "ACTIVE"


FIRST_CONV = """
import json, numpy as np, threadpoolctl
from tlkit.engine.kernels import conv
import numba
x = np.random.default_rng(0).standard_normal((2, 20, 20, 16)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((3, 3, 16, 32)).astype(np.float32)
y = conv.conv2d_forward(x, w, padding="same")
blas = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
print(json.dumps({"layer": numba.threading_layer(), "blas": blas, "finite": bool(np.isfinite(y).all())}))
"""


def test_first_kernel_call_runs_blas_on_one_thread_and_numba_on_openmp_or_workqueue():
    got = run_python(FIRST_CONV, OPENBLAS_NUM_THREADS="2")
    assert got["finite"]
    assert got["blas"] and set(got["blas"]) == {1}, got
    assert got["layer"] in ("omp", "workqueue", "tbb")


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_split_products_match_numpy(monkeypatch, workers):
    monkeypatch.setattr(threads, "num_threads", lambda: workers)
    monkeypatch.setattr(threads, "MIN_SPLIT_FLOPS", 0)  # split even these small products
    rng = np.random.default_rng(0)
    a = rng.standard_normal((301, 70)).astype(np.float32)
    b = rng.standard_normal((70, 45)).astype(np.float32)
    ref = a.astype(np.float64) @ b

    out = np.empty((301, 45), np.float32)
    np.testing.assert_allclose(threads.matmul(a, b, out), ref, rtol=1e-4, atol=1e-4)

    wide = np.zeros((301, 100), np.float32)  # strided out: a channel slice of a wider buffer
    threads.matmul(a, b, wide[:, 20:65])
    np.testing.assert_allclose(wide[:, 20:65], ref, rtol=1e-4, atol=1e-4)
    assert not wide[:, :20].any() and not wide[:, 65:].any(), "wrote outside its slice"

    stack_a = rng.standard_normal((36, 50, 20)).astype(np.float32)
    stack_b = rng.standard_normal((36, 20, 30)).astype(np.float32)
    stack_out = np.empty((36, 50, 30), np.float32)
    np.testing.assert_allclose(threads.matmul(stack_a, stack_b, stack_out),
                               stack_a.astype(np.float64) @ stack_b, rtol=1e-4, atol=1e-4)


def test_transposed_left_operand(monkeypatch):
    monkeypatch.setattr(threads, "num_threads", lambda: 2)
    monkeypatch.setattr(threads, "MIN_SPLIT_FLOPS", 0)
    rng = np.random.default_rng(2)
    patches = rng.standard_normal((400, 27)).astype(np.float32)
    dy = rng.standard_normal((400, 8)).astype(np.float32)
    out = np.empty((27, 8), np.float32)
    np.testing.assert_allclose(threads.matmul(patches.T, dy, out), patches.T.astype(np.float64) @ dy,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_products_split_along_the_shared_dimension_match_numpy(monkeypatch, workers):
    monkeypatch.setattr(threads, "num_threads", lambda: workers)
    monkeypatch.setattr(threads, "MIN_SPLIT_FLOPS", 0)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((503, 27)).astype(np.float32)
    b = rng.standard_normal((503, 40)).astype(np.float32)
    ref = a.T.astype(np.float64) @ b
    out = np.empty((27, 40), np.float32)
    np.testing.assert_allclose(threads.matmul_tn(a, b, out), ref, rtol=1e-4, atol=1e-4)
    col_sums = np.full(40, np.nan, np.float32)  # b's column sums too (a bias gradient), by the same chunks
    np.testing.assert_allclose(threads.matmul_tn(a, b, out, col_sums), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(col_sums, b.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-4)

    wide = np.zeros((27, 60), np.float32)  # strided out and strided b: column blocks of wider arrays
    b_wide = np.concatenate([b, rng.standard_normal((503, 20)).astype(np.float32)], axis=1)
    threads.matmul_tn(a, b_wide[:, :40], wide[:, 10:50])
    np.testing.assert_allclose(wide[:, 10:50], ref, rtol=1e-4, atol=1e-4)
    assert not wide[:, :10].any() and not wide[:, 50:].any(), "wrote outside its slice"


@pytest.mark.parametrize("per_thread", [1, 4])
@pytest.mark.parametrize("one_thread_takes_all", [False, True])
def test_products_split_along_the_shared_dimension_by_chunks_a_thread(monkeypatch, per_thread, one_thread_takes_all):
    """matmul_tn's chunks a thread (``per_thread``): each thread's first chunk written into its sum, the
    next ones added; when one thread takes every chunk (the other late), the other's sum is left out."""
    monkeypatch.setattr(threads, "num_threads", lambda: 2)
    monkeypatch.setattr(threads, "MIN_SPLIT_FLOPS", 0)
    monkeypatch.setattr(threads, "MIN_CHUNK_FLOPS", 0)
    bounds_seen = []
    if one_thread_takes_all:
        def on_slot_zero(bounds, work, parts):
            bounds_seen.append(len(bounds) - 1)
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                work(0, lo, hi)
        monkeypatch.setattr(threads, "run_chunks", on_slot_zero)
    rng = np.random.default_rng(4)
    a = rng.standard_normal((501, 19)).astype(np.float32)
    b = rng.standard_normal((501, 33)).astype(np.float32)
    out, col_sums = np.full((19, 33), np.nan, np.float32), np.full(33, np.nan, np.float32)
    threads.matmul_tn(a, b, out, col_sums, per_thread)
    np.testing.assert_allclose(out, a.T.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(col_sums, b.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-4)
    assert bounds_seen == ([2 * per_thread] if one_thread_takes_all else [])


def test_info_reports_threadpools():
    got = threads.info()
    assert got["numba_threads"] >= 1
    assert any(p["user_api"] == "blas" for p in got["threadpools"])


SQUEEZENET_RUN = """
import importlib, json, pkgutil, numpy as np
import tlkit
from tlkit import layers as L
from tlkit.zoo import SqueezeNet
import tlkit.engine.kernels as kernels
tlkit.utils.set_random_seed(0)
base = SqueezeNet(weights=None, input_shape=(64, 64, 3))
x = np.random.default_rng(0).random((4, 64, 64, 3)).astype(np.float32)
base.predict_on_batch(x)
for layer in base.layers:
    layer.trainable = layer.name.startswith("fire9")
inp = tlkit.Input((64, 64, 3))
model = tlkit.Model(inp, L.Dense(2, activation="softmax")(L.GlobalAveragePooling2D()(base(inp))))
model.compile("adam", "sparse_categorical_crossentropy")
model.train_on_batch(x, np.arange(4) % 2)
counts = {}
for info in pkgutil.iter_modules(kernels.__path__):
    module = importlib.import_module(f"tlkit.engine.kernels.{info.name}")
    for name, obj in vars(module).items():
        if hasattr(obj, "signatures") and obj.signatures:
            counts[f"{info.name}.{name}"] = len(obj.signatures)
print(json.dumps(counts))
"""


def test_a_squeezenet_run_compiles_each_kernel_once():
    # Each extra specialisation (e.g. a literal argument beside an int64 one) is seconds of cold start.
    counts = run_python(SQUEEZENET_RUN)
    assert counts, "no kernel ran"
    assert {k: v for k, v in counts.items() if v > 1} == {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_split_products_work_in_a_forked_child(monkeypatch):
    monkeypatch.setattr(threads, "num_threads", lambda: 2)
    monkeypatch.setattr(threads, "MIN_SPLIT_FLOPS", 0)
    a = np.random.default_rng(3).standard_normal((64, 32)).astype(np.float32)
    b = np.random.default_rng(4).standard_normal((32, 16)).astype(np.float32)
    threads.matmul(a, b, np.empty((64, 16), np.float32))  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:  # child: the inherited pool has no threads, so a stale pool never runs the work
        import threading
        out = np.zeros((64, 16), np.float32)
        worker = threading.Thread(target=threads.matmul, args=(a, b, out), daemon=True)
        worker.start()
        worker.join(120)  # only a hang reaches this bound
        os._exit(2 if worker.is_alive() else 0 if np.allclose(out, a @ b, rtol=1e-4, atol=1e-4) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_run_chunks_runs_each_chunk_once_and_a_stalled_worker_holds_up_only_its_chunk():
    """A worker that stalls on its first chunk (as a descheduled thread would) while the caller
    does all the rest: the call completes, each chunk ran exactly once."""
    import threading

    bounds = list(range(0, 41, 4))  # 10 chunks
    ran = []
    lock = threading.Lock()
    caller_did_the_rest = threading.Event()

    def work(slot, lo, hi):
        with lock:
            ran.append((slot, lo, hi))
            if sum(1 for s, _, _ in ran if s == 0) == len(bounds) - 2:
                caller_did_the_rest.set()
        if slot == 1:
            assert caller_did_the_rest.wait(120), "the caller waited for the stalled worker"  # only a hang hits this

    threads.run_chunks(bounds, work, parts=2)
    assert sorted((lo, hi) for _, lo, hi in ran) == list(zip(bounds[:-1], bounds[1:]))
    assert {s for s, _, _ in ran} <= {0, 1}


def test_run_chunks_raises_the_first_error_after_all_chunks_settle():
    seen = []

    def work(slot, lo, hi):
        seen.append(lo)
        if lo == 3:
            raise RuntimeError("chunk 3 failed")

    with pytest.raises(RuntimeError, match="chunk 3 failed"):
        threads.run_chunks(range(8), work, parts=3)
    assert 3 in seen
    threads.run_chunks(range(3), lambda slot, lo, hi: seen.append(("again", lo)), parts=3)  # the pool still works
    assert ("again", 0) in seen and ("again", 1) in seen


def test_numba_kernels_inside_chunks_run_on_their_thread_alone():
    """Inside a chunk numba's thread count is 1 (per thread); outside, the caller's is restored."""
    import numba

    if not threads.chunks_can_run_numba():
        pytest.skip("numba's threading layer here does not allow concurrent kernels")
    before = numba.get_num_threads()
    counts = []
    threads.run_chunks(range(6), lambda slot, lo, hi: counts.append(numba.get_num_threads()), parts=2)
    assert counts and set(counts) == {1}
    assert numba.get_num_threads() == before


def test_num_threads_follows_numba_per_thread():
    """num_threads reads numba's count directly once launched: it still follows set_num_threads, and a
    chunk's thread (numba set to 1 there) sees 1 while the caller keeps its own count."""
    import numba

    threads.num_threads()  # launches numba's threads: later calls take the direct read
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert threads.num_threads() == 1
        numba.set_num_threads(before)
        assert threads.num_threads() == before
        seen = []
        threads.run_chunks(range(5), lambda slot, lo, hi: seen.append(threads.num_threads()), parts=2)
        assert set(seen) == {1}
        assert threads.num_threads() == before
    finally:
        numba.set_num_threads(before)


def test_set_numba_threads_is_seen_by_numba_and_restored_around_chunks():
    """set_numba_threads (numba's thread-local count set without its locks, as run_chunks does around
    every call) is what numba itself then reports; a numba kernel run after run_chunks has the caller's
    count back."""
    import numba

    threads.num_threads()
    before = numba.get_num_threads()
    try:
        threads.set_numba_threads(1)
        assert numba.get_num_threads() == 1 and threads.num_threads() == 1
        threads.set_numba_threads(before)
        assert numba.get_num_threads() == before
        inside = []
        threads.run_chunks(range(3), lambda slot, lo, hi: inside.append(numba.get_num_threads()), parts=2)
        assert set(inside) == {1}
        assert numba.get_num_threads() == before
    finally:
        numba.set_num_threads(before)


def test_set_numba_threads_keeps_the_count_numba_accepts():
    """The direct writer bypasses numba's own check: a count above NUMBA_NUM_THREADS (from a patched
    num_threads, once) or below 1 is clamped, so numba's parallel kernels never look for threads that
    do not exist, and later calls see the real count (it once made test order matter)."""
    import numba

    threads.num_threads()
    before = numba.get_num_threads()
    try:
        threads.set_numba_threads(numba.config.NUMBA_NUM_THREADS + 5)
        assert numba.get_num_threads() == threads.num_threads() == numba.config.NUMBA_NUM_THREADS
        threads.set_numba_threads(0)
        assert numba.get_num_threads() == threads.num_threads() == 1
    finally:
        numba.set_num_threads(before)
