"""Throughput of `tlkit features` on one process vs a local Dask cluster (issue 22).

    python scripts/bench_distributed.py            # 5 rounds, ~3 minutes on 2 cores
    python scripts/bench_distributed.py --repeats 9 --folder ../shared/data/datasets/hymenoptera_data/val

This checkout's tlkit is used by the script and by every process it starts (the Dask workers too),
whatever is installed. Needs dask (pip install tlkit[dask]).

Real SqueezeNet weights (../shared/data/weights), 224x224, average-pooled features. Each
configuration is measured warm (numba kernels compiled, the model loaded on every worker) from the
list of images to the written feature file:

  one process, T threads              (a process of its own, T numba and T BLAS threads)
  a LocalCluster of W workers x 1 thread (the driver merging into the same feature file)

The configurations take turns, round after round, and each keeps its best round: on a machine
shared with other work the load drifts, and turns spread the drift over all of them. It prints the
speed-up of 2 workers over 1 worker and the overhead of 2 workers x 1 thread over one process with
2 threads, in wall time and in CPU time (the driver's and the workers' processes: the work the
distributed path adds, which other load on the machine skews less), with the load average.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This checkout, for this process and the ones it starts (single-process runners and Dask workers).
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
WEIGHTS = os.path.join(DATA, "weights", "squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5")

ONE_PROCESS = """
import json, sys, time
from tlkit.apps.feature_file import extract_features, load_feature_model, model_spec, write_feature_file
from tlkit.apps.inference import collect_images
folder, weights, out = sys.argv[1:4]
paths = collect_images([folder])
model, meta = load_feature_model(model_spec("squeezenet", weights, 224))
extract_features(model, meta, paths[:8], 32, "avg")  # warm: kernels compiled
print("ready", flush=True)
for _ in sys.stdin:  # one timed run per line
    t0, c0 = time.perf_counter(), time.process_time()
    done, feats, failed = extract_features(model, meta, paths, 32, "avg")
    write_feature_file(out, done, [feats], failed, meta, "avg")
    print(json.dumps({"images": len(paths), "seconds": time.perf_counter() - t0,
                      "cpu_seconds": time.process_time() - c0}), flush=True)
"""


def one_process(stack, folder, threads):
    """The single-process path in a process of its own with ``threads`` numba and BLAS threads (a
    Dask worker's BLAS runs one thread, its numba the worker's threads); the runner of one timed run."""
    out = os.path.join(tempfile.mkdtemp(), "one.h5")
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": ROOT}
    child = stack.enter_context(subprocess.Popen([sys.executable, "-c", ONE_PROCESS, folder, WEIGHTS, out], env=env,
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    stack.callback(child.stdin.close)
    assert child.stdout.readline().strip() == "ready"

    def run():
        child.stdin.write("\n")
        child.stdin.flush()
        return json.loads(child.stdout.readline())

    return run


def _warm(spec):
    import numpy as np

    from tlkit.distributed.tasks import worker_model

    model, meta, _, _ = worker_model(spec)
    model.predict_on_batch(np.zeros((2, meta["image_size"], meta["image_size"], 3), np.float32))


def on_cluster(stack, folder, workers):
    """A LocalCluster of ``workers`` x 1 thread, warm; the runner of one timed job on it."""
    from tlkit.apps.feature_file import model_spec
    from tlkit.distributed import connect, distributed_features

    out = os.path.join(tempfile.mkdtemp(), "many.h5")
    client = stack.enter_context(connect(workers=workers, threads_per_worker=1))  # as `--workers` makes it
    client.wait_for_workers(workers)
    client.run(_warm, model_spec("squeezenet", WEIGHTS, 224))

    def cpu():  # (this driver's, the workers') process CPU time
        return time.process_time(), sum(client.run(time.process_time).values())

    def run():
        t0, (d0, w0) = time.perf_counter(), cpu()
        done = distributed_features(client, [folder], "squeezenet", WEIGHTS, 224, out, "avg", 32)
        d1, w1 = cpu()
        return {"images": done["images"] + len(done["skipped"]), "seconds": time.perf_counter() - t0,
                "cpu_seconds": d1 - d0 + w1 - w0, "driver_cpu_seconds": d1 - d0, "workers": done["throughput"]}

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=os.path.join(DATA, "datasets", "hymenoptera_data", "val"))
    parser.add_argument("--repeats", type=int, default=5, help="rounds; each configuration keeps its best")
    args = parser.parse_args()
    if not os.path.isfile(WEIGHTS) or not os.path.isdir(args.folder):
        sys.exit(f"needs the SqueezeNet weights ({WEIGHTS}) and an image folder ({args.folder}): see --help.")
    from machine import cpu_model  # scripts/machine.py, beside this script

    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; tlkit from {ROOT}", flush=True)
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        runners = {"one process x 1 thread": one_process(stack, args.folder, 1),
                   "one process x 2 threads": one_process(stack, args.folder, 2),
                   "1 worker x 1 thread": on_cluster(stack, args.folder, 1),
                   "2 workers x 1 thread": on_cluster(stack, args.folder, 2)}
        results = {}
        for _ in range(args.repeats):
            for name, run in runners.items():
                r = run()
                if name not in results or r["seconds"] < results[name]["seconds"]:
                    results[name] = r
    for name, r in results.items():
        print(f"{name:<26} {r['images']} images in {r['seconds']:.2f} s = {r['images'] / r['seconds']:.1f} images/s, "
              f"{r['cpu_seconds'] * 1000 / r['images']:.1f} CPU ms/image"
              + (f" ({r['driver_cpu_seconds'] * 1000 / r['images']:.1f} of them the driver's, which also hosts the "
                 "local schedulers)" if "driver_cpu_seconds" in r else ""))
        for w in r.get("workers") or []:
            print(f"    {w['worker']}: {w['images']} images, {w['images_per_second']:.1f} images/s")
    speedup = results["1 worker x 1 thread"]["seconds"] / results["2 workers x 1 thread"]["seconds"]
    overhead = results["2 workers x 1 thread"]["seconds"] / results["one process x 2 threads"]["seconds"] - 1
    single = results["1 worker x 1 thread"]["seconds"] / results["one process x 1 thread"]["seconds"] - 1
    print(f"2 workers vs 1 worker (1 thread each): {speedup:.2f}x")
    print(f"overhead of 2 workers x 1 thread vs one process x 2 threads: {overhead * 100:+.1f}%")
    print(f"overhead of 1 worker x 1 thread vs one process x 1 thread: {single * 100:+.1f}%")
    cpu = results["2 workers x 1 thread"]["cpu_seconds"] / results["one process x 2 threads"]["cpu_seconds"] - 1
    print(f"CPU time of 2 workers x 1 thread (workers + driver) vs one process x 2 threads: {cpu * 100:+.1f}%")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
