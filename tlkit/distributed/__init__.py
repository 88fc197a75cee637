"""Feature extraction, prediction and evaluation of large image collections on a Dask cluster.

An optional part of tlkit (``pip install tlkit[dask]``): nothing else in tlkit imports it, and
``import tlkit`` never imports dask. See docs/distributed.md.
"""
try:
    import distributed as _distributed  # noqa: F401
except ModuleNotFoundError as e:  # pragma: no cover - depends on what is installed
    if e.name not in ("distributed", "dask"):
        raise
    raise ModuleNotFoundError("tlkit's distributed mode needs dask: pip install tlkit[dask]", name=e.name) from None

from tlkit.distributed.cluster import connect
from tlkit.distributed.driver import (distributed_evaluation, distributed_features, distributed_flipped_features,
                                      distributed_predictions, format_throughput, worker_throughput)

__all__ = ["connect", "distributed_evaluation", "distributed_features", "distributed_flipped_features",
           "distributed_predictions", "format_throughput", "worker_throughput"]
