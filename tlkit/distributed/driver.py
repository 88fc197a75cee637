"""The driver: split the images into partitions, hand them to the cluster, follow them on one progress
bar, and merge the finished partitions into what the single-machine path writes.

    >>> from dask.distributed import Client
    >>> from tlkit.distributed import distributed_features
    >>> with Client("tcp://scheduler:8786") as client:
    ...     distributed_features(client, ["/shared/photos"], "squeezenet", weights="squeezenet.h5",
    ...                          out="features.h5")
"""
import os
import shutil
import tempfile
import threading
import uuid

import numpy as np

from tlkit.distributed.partitions import PartitionStore, default_partition_size, partition_bounds
from tlkit.distributed.tasks import PROGRESS_TOPIC, run_partition


class JobProgress:
    """One bar over the images of every partition: each partition counts its most advanced report (a
    partition started again after its worker died does not count twice), a finished one all its images."""

    def __init__(self, bar, job_id, sizes):
        self.bar, self.job_id, self.sizes = bar, job_id, sizes
        self.done, self.lock = {}, threading.Lock()

    def report(self, index, done):
        with self.lock:
            self.done[index] = max(self.done.get(index, 0), min(done, self.sizes[index]))
            if self.bar is not None:
                self.bar.update(sum(self.done.values()))

    def on_event(self, event):
        msg = event[1]
        if isinstance(msg, dict) and msg.get("job") == self.job_id:
            self.report(msg["partition"], msg["done"])


def _slots(client):
    return max(1, sum(client.nthreads().values()))


def run_job(client, folder, kind, spec, options, paths, resume=False, partition_size=None, bar=None,
            on_partition=None):
    """Compute every partition of the job not already finished in ``folder``; [summary] of those computed.

    ``bar``: a Progbar over ``len(paths)`` images. ``on_partition(summary)``: called as each finishes.
    A KeyboardInterrupt cancels what is running; the finished partitions stay for ``resume``."""
    from distributed import as_completed

    size = partition_size or default_partition_size(len(paths), _slots(client), options["batch_size"])
    job = {"kind": kind, "spec": spec, "options": options, "paths": [str(p) for p in paths], "partition_size": size}
    store = PartitionStore(folder)
    store.open(job, resume)
    bounds = partition_bounds(len(paths), size)
    job_id = uuid.uuid4().hex
    progress = JobProgress(bar, job_id, {i: b - a for i, (a, b) in enumerate(bounds)})
    todo = []
    for i, (a, b) in enumerate(bounds):
        if store.finished(i, kind):
            progress.report(i, b - a)
        else:
            todo.append(i)
    task = {"id": job_id, "kind": kind, "spec": spec, "options": options}
    client.subscribe_topic(PROGRESS_TOPIC, progress.on_event)
    futures = [client.submit(run_partition, store.folder, task, i, job["paths"][slice(*bounds[i])],
                             key=f"tlkit-{kind}-{job_id}-{i:05d}", pure=False) for i in todo]
    summaries = []
    try:
        for future in as_completed(futures):
            summary = future.result()
            progress.report(summary["partition"], summary["images"])
            summaries.append(summary)
            if on_partition is not None:
                on_partition(summary)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        client.unsubscribe_topic(PROGRESS_TOPIC)
    missing = [i for i in range(len(bounds)) if not store.finished(i, kind)]
    if missing:
        raise RuntimeError(f"partitions {missing[:5]} of {folder} have no result after the job finished; "
                           "run again with --resume.")
    return store, len(bounds), sorted(summaries, key=lambda s: s["partition"])


def worker_throughput(summaries):
    """[{"worker", "host", "partitions", "images", "seconds", "images_per_second", "model_loads"}]: each
    worker's images over the time from its first partition's start to its last one's end."""
    by_worker = {}
    for s in summaries:
        by_worker.setdefault(s["worker"], []).append(s)
    rows = []
    for worker, items in sorted(by_worker.items()):
        seconds = max(s["end"] for s in items) - min(s["start"] for s in items)
        images = sum(s["images"] for s in items)
        rows.append({"worker": worker, "host": items[0]["host"], "partitions": len(items), "images": images,
                     "seconds": seconds, "images_per_second": images / seconds if seconds > 0 else 0.0,
                     "model_loads": sum(bool(s["model_loaded"]) for s in items)})
    return rows


def format_throughput(rows):
    return [f"worker {r['worker']} ({r['host']}): {r['images']} images in {r['partitions']} partition(s), "
            f"{r['seconds']:.1f} s, {r['images_per_second']:.1f} images/s, model loaded {r['model_loads']}x"
            for r in rows]


class _Folder:
    """The partition folder: the one given (kept until the output is written), or a temporary one."""

    def __init__(self, folder):
        self.given = folder
        self.path = folder or tempfile.mkdtemp(prefix="tlkit-partitions-")

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


def distributed_features(client, images, model, weights="imagenet", image_size=224, out="features.h5",
                         pooling="avg", batch_size=32, parts=None, resume=False, partition_size=None, bar=None,
                         on_partition=None):
    """Write the feature file ``out`` (as ``tlkit features`` on one machine does) from the cluster's
    partitions in ``parts`` (default ``OUT.parts``); returns {"images", "skipped", "throughput"}."""
    from tlkit.apps.feature_file import model_spec, write_feature_file
    from tlkit.apps.inference import require_images

    paths = require_images(_as_list(images))
    folder = _Folder(parts or os.fspath(out) + ".parts")
    options = {"batch_size": batch_size, "pooling": pooling}
    store, count, summaries = run_job(client, folder.path, "features", model_spec(model, weights, image_size),
                                      options, paths, resume, partition_size, _sized(bar, paths), on_partition)
    done, failures, meta = _merged_listing(store, count)
    write_feature_file(out, done, (store.read_features(i)[1] for i in range(count)), failures, meta, pooling)
    folder.remove()
    return {"images": len(done), "skipped": failures, "throughput": worker_throughput(summaries)}


def distributed_flipped_features(client, paths, spec, flips, pooling="avg", batch_size=32, parts=None, resume=False,
                                 partition_size=None, bar=None, on_partition=None):
    """The outputs of the model ``spec`` (``tlkit.apps.feature_file.model_spec``) for each (horizontal,
    vertical) flip in ``flips`` of each of ``paths``, as ``tlkit finetune`` caches them: (paths read,
    [float32 array (N, ...) per flip], [(path, reason)] skipped, throughput). ``parts``: the partition
    folder, kept only until the arrays are read (``resume`` continues an interrupted job's)."""
    folder = _Folder(parts)
    options = {"batch_size": batch_size, "pooling": pooling, "flips": [[bool(h), bool(v)] for h, v in flips]}
    store, count, summaries = run_job(client, folder.path, "features", spec, options, list(paths), resume,
                                      partition_size, _sized(bar, paths), on_partition)
    done, failures, _ = _merged_listing(store, count)
    stacked = [store.read_features(i)[1] for i in range(count)]
    stacked = [a for a in stacked if len(a)]
    variants = [np.concatenate([a[:, k] for a in stacked]) if stacked else None for k in range(len(flips))]
    folder.remove()
    return done, variants, failures, worker_throughput(summaries)


def _merged_listing(store, count):
    """(paths, skipped, model metadata) of a features job's partitions, in order."""
    done, failures, meta = [], [], None
    for i in range(count):
        p, _, failed, meta = store.read_features(i, arrays=False)
        done += p
        failures += failed
    return done, failures, meta


def distributed_predictions(client, model_path, images, top=1, batch_size=32, parts=None, resume=False,
                            partition_size=None, bar=None, on_partition=None):
    """(results, failures, throughput) as ``tlkit.apps.inference.predict_files`` gives them, in the same order."""
    from tlkit.apps.inference import require_images

    paths = require_images(_as_list(images))
    return _predict_paths(client, model_path, paths, top, batch_size, parts, resume, partition_size, bar,
                          on_partition)


def distributed_evaluation(client, model_path, data_dir, batch_size=32, parts=None, resume=False,
                           partition_size=None, bar=None, on_partition=None):
    """The report of ``tlkit.apps.inference.evaluate_folder``, with "throughput" per worker."""
    from tlkit.apps.inference import evaluation_report, labelled_images, load_classifier

    _, meta = load_classifier(model_path)
    items = labelled_images(data_dir, meta["classes"])
    results, failures, throughput = _predict_paths(client, model_path, [p for p, _ in items], 1, batch_size, parts,
                                                   resume, partition_size, bar, on_partition)
    rep = evaluation_report(items, results, failures, meta["classes"])
    rep["throughput"] = throughput
    return rep


def _predict_paths(client, model_path, paths, top, batch_size, parts, resume, partition_size, bar, on_partition):
    path = os.path.abspath(model_path)
    st = os.stat(path)
    spec = {"kind": "classifier", "path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    folder = _Folder(parts)
    store, count, summaries = run_job(client, folder.path, "predict", spec, {"batch_size": batch_size, "top": top},
                                      paths, resume, partition_size, _sized(bar, paths), on_partition)
    results, failures = [], []
    for i in range(count):
        r, f = store.read_predictions(i)
        results += r
        failures += f
    folder.remove()
    return results, failures, worker_throughput(summaries)


def _as_list(images):
    return [images] if isinstance(images, (str, os.PathLike)) else images


def _sized(bar, paths):
    """``bar``: a Progbar, or a callable making one for a number of images."""
    return bar(len(paths)) if callable(bar) and not hasattr(bar, "update") else bar
