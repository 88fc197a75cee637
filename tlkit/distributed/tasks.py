"""What runs on a Dask worker: one partition of a job, with the model loaded once per worker process.

The model is kept in a process-wide cache keyed by its identity (the model spec: a base name and
weights, or a model file with its size and modification time), so every partition a worker runs
after its first reuses it. The cache holds at most ``TLKIT_WORKER_MODELS`` models (default 2): a
long-lived worker serving many jobs drops the one used least recently. The worker's threads run partitions side by side: decoding overlaps, and
the forward passes take turns on the one model (its inference buffers are reused between calls), each
spread over the worker's threads by numba.
"""
import collections
import json
import os
import socket
import threading
import time

PROGRESS_TOPIC = "tlkit-progress"

_models = collections.OrderedDict()  # spec key -> entry, least recently used first
_models_guard = threading.Lock()


def model_cache_limit():
    """How many models a worker process keeps (``TLKIT_WORKER_MODELS``, at least 1)."""
    value = os.environ.get("TLKIT_WORKER_MODELS", "2")
    try:
        return max(1, int(value))
    except ValueError:
        raise ValueError(f"TLKIT_WORKER_MODELS={value!r}: give a whole number of models, e.g. 2.") from None


def _load(spec):
    if spec["kind"] == "classifier":
        from tlkit.apps.inference import load_classifier

        return load_classifier(spec["path"])
    from tlkit.apps.feature_file import load_feature_model

    return load_feature_model(spec)


def worker_model(spec):
    """(model taking turns, meta, whether this call loaded it, seconds the load took)."""
    key = json.dumps(spec, sort_keys=True)
    with _models_guard:
        entry = _models.setdefault(key, {"lock": threading.Lock(), "loaded": None})
        _models.move_to_end(key)
        # Beyond the limit the least recently used go (a partition still running keeps its reference).
        while len(_models) > model_cache_limit():
            _models.popitem(last=False)
    with entry["lock"]:
        if entry["loaded"] is not None:
            return entry["loaded"] + (False, 0.0)
        t0 = time.perf_counter()
        model, meta = _load(spec)
        entry["loaded"] = (TakingTurns(model), meta)
        return entry["loaded"] + (True, time.perf_counter() - t0)


class TakingTurns:
    """A model whose ``predict_on_batch`` runs for one thread at a time."""

    def __init__(self, model):
        self.model, self.lock = model, threading.Lock()

    def predict_on_batch(self, x):
        with self.lock:
            return self.model.predict_on_batch(x)


class EventProgress:
    """``update(done)`` sends the partition's count of handled images to the driver's progress bar."""

    def __init__(self, worker, job_id, index):
        self.worker, self.job_id, self.index = worker, job_id, index

    def update(self, done):
        self.worker.log_event(PROGRESS_TOPIC, {"job": self.job_id, "partition": self.index, "done": int(done)})


def run_partition(folder, job, index, paths):
    """Compute partition ``index`` of ``job`` and write its result file; a summary for the report."""
    import numba
    from distributed import get_worker

    from tlkit.distributed.partitions import PartitionStore

    start = time.time()
    store = PartitionStore(folder)
    store.mark_started(index)
    worker = get_worker()
    # Thread-local in numba: this task's thread spreads its forward passes over the worker's share.
    numba.set_num_threads(max(1, min(worker.state.nthreads, numba.config.NUMBA_NUM_THREADS)))
    model, meta, loaded, load_seconds = worker_model(job["spec"])
    progress = EventProgress(worker, job["id"], index)
    options = job["options"]
    if job["kind"] == "features":
        from tlkit.apps.feature_file import extract_features

        done, features, failures = extract_features(model, meta, paths, options["batch_size"], options["pooling"],
                                                    progress, options.get("flips"))
        store.write_features(index, done, features, failures, meta)
    else:
        from tlkit.apps.inference import predict_files

        results, failures = predict_files(model, meta, paths, options["top"], options["batch_size"], progress)
        store.write_predictions(index, results, failures)
    return {"partition": index, "worker": worker.address, "host": socket.gethostname(), "pid": os.getpid(),
            "images": len(paths), "start": start, "end": time.time(), "model_loaded": loaded,
            "load_seconds": load_seconds}
