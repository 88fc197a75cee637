"""Stage 1's feature cache of ``tlkit finetune`` computed on a Dask cluster (``--scheduler`` or
``--cluster-workers``): the same arrays, in the same order, as ``features.compute_features`` in one
process, from partitions the workers compute (``tlkit.distributed``).

The workers load the driver's own frozen base from ``RUN/feature-parts/base.h5`` (so a base with random
or locally cached weights is the same everywhere; the run folder must be on storage the workers read,
like the images). Finished partitions stay in ``RUN/feature-parts/<training|validation>`` until their
arrays are read, so an interrupted run continued with ``--resume`` computes only the missing ones.
"""
import contextlib
import os
import shutil

import numpy as np

from tlkit.apps.features import HEAD_POOLING, NO_FLIP
from tlkit.utils.progbar import Progbar

PARTS = "feature-parts"


def base_spec(base, mode, image_size, folder):
    """The model spec of the base saved in ``folder`` (written once: a resumed run finds the same file)."""
    from tlkit.apps.feature_file import model_spec

    path = os.path.join(folder, "base.h5")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        base.save(path, metadata={"image_size": image_size, "preprocessing": mode})
    return model_spec(path)


class ClusterFeatures:
    """``compute(iterator, label, flips, pool)`` -> ([outputs per flip], labels) like ``compute_features``."""

    def __init__(self, client, spec, config, folder):
        self.client, self.spec, self.config, self.folder = client, spec, config, folder

    def compute(self, iterator, label, flips=(NO_FLIP,), pool=None):
        import tlkit.distributed as dist

        config = self.config
        paths = list(iterator.filepaths)
        if config.verbose:
            mirrored = f", {len(flips)} flips of each" if len(flips) > 1 else ""
            print(f"Caching base features for {label} ({len(paths)} images{mirrored}) on the cluster", flush=True)
        bar = Progbar(len(paths), verbose=config.verbose, unit_name="image")
        done, variants, failures, throughput = dist.distributed_flipped_features(
            self.client, paths, self.spec, flips, HEAD_POOLING[pool], config.batch_size,
            os.path.join(self.folder, label), config.resume, bar=bar)
        if config.verbose:
            for line in dist.format_throughput(throughput) + [f"skipped {p}: {r}" for p, r in failures]:
                print(line, flush=True)
        if not done:
            raise ValueError(f"none of the {label} images could be read on the cluster's workers.")
        position = {p: i for i, p in enumerate(paths)}
        classes = np.asarray(iterator.classes)[[position[p] for p in done]]
        labels = np.eye(len(iterator.class_indices), dtype=np.float32)[classes]
        return variants, labels


@contextlib.contextmanager
def cluster_features(config, base, mode):
    """A ClusterFeatures on the cluster the options name, or None without --scheduler/--cluster-workers.
    The partition folder goes once every feature job in the block has finished."""
    if not (config.scheduler or config.cluster_workers):
        yield None
        return
    from tlkit.apps.distributed_cli import cluster_client

    folder = os.path.join(config.out, PARTS)
    spec = base_spec(base, mode, config.image_size, folder)
    with cluster_client(config.scheduler, config.cluster_workers) as client:
        yield ClusterFeatures(client, spec, config, folder)
    shutil.rmtree(folder, ignore_errors=True)
