"""A job's partition folder: what the job is, which partitions started, and each finished one's result.

    FOLDER/job.json            the job: kind, model, options, every image path, partition size
    FOLDER/started/part-00003.<pid>   written by the worker process that starts partition 3
    FOLDER/part-00003.npz      features of partition 3 (+ its paths, skipped images, model metadata)
    FOLDER/part-00003.json     predictions of partition 3 (+ its skipped images)

A result file appears in one rename (``tlkit.utils.io``), so a worker killed mid-partition leaves no
result and the partition is computed again; a recomputed partition replaces its file with the same
content. Each partition has one file, so every image is merged exactly once.
"""
import json
import os

import numpy as np

from tlkit.utils.io import atomic_path, atomic_write_text, remove_stale_temporaries


class PartitionFolderError(ValueError):
    """The partition folder belongs to another job, or to an earlier run without --resume."""


def partition_bounds(count, size):
    """[(start, stop)] slices of ``count`` items in partitions of ``size`` (the last may be smaller)."""
    return [(start, min(start + size, count)) for start in range(0, count, size)]


def default_partition_size(count, slots, batch_size):
    """About four partitions per worker thread (so a lost worker's share spreads and the bar moves),
    in whole batches so each partition batches its images as one process would."""
    per = -(-count // max(1, 4 * slots))
    return max(batch_size, -(-per // batch_size) * batch_size)


class PartitionStore:
    def __init__(self, folder):
        self.folder = os.path.abspath(os.fspath(folder))

    def _part(self, index, ext):
        return os.path.join(self.folder, f"part-{index:05d}.{ext}")

    def open(self, job, resume):
        """Start the job in the folder, or with ``resume`` continue the same job found there."""
        path = os.path.join(self.folder, "job.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                earlier = json.load(f)
            if not resume:
                raise PartitionFolderError(
                    f"{self.folder} holds the partitions of an earlier run: add --resume to compute only the "
                    "missing ones, or remove the folder to start again.")
            if earlier != json.loads(json.dumps(job)):  # as JSON reads it back: tuples become lists
                raise PartitionFolderError(
                    f"{self.folder} holds partitions of a different job (other images, model or options): "
                    "remove the folder, or run the command that made it.")
            remove_stale_temporaries(self.folder)  # what killed writers left; the driver owns the folder
        else:
            atomic_write_text(path, json.dumps(job))
        os.makedirs(os.path.join(self.folder, "started"), exist_ok=True)

    def finished(self, index, kind):
        return os.path.exists(self._part(index, "npz" if kind == "features" else "json"))

    def mark_started(self, index):
        """The marker a watcher (a test, a person) sees when a worker process starts a partition."""
        with open(os.path.join(self.folder, "started", f"part-{index:05d}.{os.getpid()}"), "w"):
            pass

    def write_features(self, index, paths, features, failures, meta):
        with atomic_path(self._part(index, "npz")) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, features=features, paths=np.array(paths, dtype=str),
                         skipped=np.array(json.dumps(failures)), meta=np.array(json.dumps(meta)))

    def read_features(self, index, arrays=True):
        """(paths, features or None, [(path, reason)], meta) of a finished features partition."""
        with np.load(self._part(index, "npz"), allow_pickle=False) as z:
            paths = [str(p) for p in z["paths"]]
            failures = [tuple(item) for item in json.loads(str(z["skipped"]))]
            features = z["features"] if arrays else None
            return paths, features, failures, json.loads(str(z["meta"]))

    def write_predictions(self, index, results, failures):
        atomic_write_text(self._part(index, "json"), json.dumps({"results": results, "skipped": failures}))

    def read_predictions(self, index):
        """([(path, [(class, probability)])], [(path, reason)]) of a finished predictions partition."""
        with open(self._part(index, "json"), encoding="utf-8") as f:
            data = json.load(f)
        results = [(p, [tuple(pair) for pair in ranked]) for p, ranked in data["results"]]
        return results, [tuple(item) for item in data["skipped"]]
