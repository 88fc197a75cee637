"""Where a tlkit forward's peak memory goes (issue 16's bar: peak RSS of each forward <= the best peer's).

    python scripts/profile_memory.py                       # VGG16 b8 and b1, SqueezeNet b32 and b1
    python scripts/profile_memory.py --cases squeezenet-1
    python scripts/profile_memory.py --write               # also BENCHMARKS.md's '## Memory' section

Each case runs in its own process, the way scripts/bench.py's worker does (model built with random
weights, weights set again from arrays, forward with predict_on_batch), and prints the resident set
after each stage, the growth each stage caused, and the process's peak. Beside it: the bytes the
weights hold, numpy's own allocations at their peak during one forward (tracemalloc sees numpy's
buffers), and the heavy modules and shared libraries the process has loaded. Memory, unlike time,
does not depend on the machine's load.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("vgg16-8", "vgg16-1", "squeezenet-32", "squeezenet-1")
HEAVY = ("scipy", "scipy.linalg", "h5py", "dask", "matplotlib", "PIL.Image", "threadpoolctl")


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def shared_libraries():
    """Names of the BLAS / OpenMP / LLVM libraries mapped into this process."""
    with open("/proc/self/maps") as f:
        paths = set(re.findall(r"\s(/\S+\.so[.\d]*)", f.read()))
    keep = ("blas", "gomp", "omp", "llvm", "tbb", "hdf5")
    return sorted({os.path.basename(p) for p in paths if any(k in os.path.basename(p).lower() for k in keep)})


def worker(case):
    import tracemalloc

    stages = [("python", rss_mb())]
    import numpy as np
    stages.append(("import numpy", rss_mb()))
    import numba  # noqa: F401
    stages.append(("import numba (+llvmlite)", rss_mb()))
    import tlkit  # noqa: F401
    from tlkit.zoo import SqueezeNet, VGG16
    stages.append(("import tlkit, tlkit.zoo", rss_mb()))
    model, batch = case.rsplit("-", 1)
    batch = int(batch)
    build = {"vgg16": lambda: VGG16(weights=None, include_top=False, input_shape=(224, 224, 3)),
             "squeezenet": lambda: SqueezeNet(weights=None, input_shape=(224, 224, 3))}[model]
    base = build()
    stages.append(("build model (random weights)", rss_mb()))
    weights = base.get_weights()
    weight_mb = sum(w.nbytes for w in weights) / 2**20
    base.set_weights([w.copy() for w in weights])
    del weights
    stages.append(("set_weights (as scripts/bench.py)", rss_mb()))
    base.trainable = False
    x1 = np.random.default_rng(1).standard_normal((1, 224, 224, 3)).astype(np.float32)
    base.predict_on_batch(x1)
    stages.append(("first forward, batch 1 (kernels loaded or compiled)", rss_mb()))
    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    base.predict_on_batch(x)
    stages.append((f"forward, batch {batch}", rss_mb()))
    tracemalloc.start()
    base.predict_on_batch(x)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    base.predict_on_batch(x)
    stages.append((f"two more forwards, batch {batch}", rss_mb()))
    wino_mb = sum(layer._wino_cache[1].nbytes for layer in base.layers if getattr(layer, "_wino_cache", None)) / 2**20
    print(json.dumps({"stages": stages, "peak": peak_mb(), "weights_mb": weight_mb, "winograd_mb": wino_mb,
                      "input_mb": x.nbytes / 2**20, "traced_forward_peak_mb": traced_peak / 2**20,
                      "modules": [m for m in HEAVY if m in sys.modules], "libraries": shared_libraries()}))


def report(case, got):
    print(f"\n## {case}: peak RSS {got['peak']:.0f} MB")
    before = 0.0
    for name, mb in got["stages"]:
        print(f"  {name:<55} {mb:7.1f} MB  (+{mb - before:6.1f})")
        before = mb
    print(f"  weights (float32, as held by the layers)              {got['weights_mb']:7.1f} MB")
    print(f"  Winograd-transformed filters kept (small frozen 3x3)  {got['winograd_mb']:7.1f} MB")
    print(f"  input batch                                           {got['input_mb']:7.1f} MB")
    print(f"  numpy's allocations at their peak in one forward      {got['traced_forward_peak_mb']:7.1f} MB")
    print(f"  heavy modules loaded: {', '.join(got['modules']) or 'none'}")
    print(f"  libraries: {', '.join(got['libraries'])}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--write", action="store_true", help="also rewrite BENCHMARKS.md's '## Memory' section")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = []
    for case in args.cases:
        done = subprocess.run([sys.executable, __file__, "--worker", case], capture_output=True, text=True, env=env)
        if done.returncode:
            sys.exit(f"{case} failed:\n{done.stderr[-2000:]}")
        got = json.loads(done.stdout.strip().splitlines()[-1])
        report(case, got)
        rows.append(table_row(case, got))
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import machine

    text = (f"CPU: {machine.cpu_model()} (lscpu); memory does not depend on the load. Peak RSS of a process that builds the "
            "base (random weights), runs one forward at batch 1, then three at the batch of the case; the columns "
            "split it by stage (MB).\n\n| case | peak | python + numpy + numba | import tlkit, zoo | model built "
            "(weights) | first forward (numba runtime, kernels, Winograd filters) | of which Winograd filters "
            "| forwards at the batch (activation buffers) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
            + "".join(rows)
            + "\nWhat no tlkit change removes: the interpreter with numpy and numba imported (~91 MB, llvmlite's "
            "LLVM alone ~60 MB), and numba's runtime on its first kernel (~85 MB: its typing and lowering registries, "
            "the cached machine code loaded into LLVM, the OpenMP pool, and scipy.linalg's BLAS bindings, ~17 MB, "
            "which numba.np.arraymath imports at once when scipy is installed; tlkit does not need scipy, and "
            "without it the same forwards peak ~17 MB lower). Transformed Winograd filters are kept only when "
            "small (winograd_filters.FILTER_BLOCK_BYTES); larger ones are transformed a group of planes at a time "
            "into one reused scratch in every chunk. Peers' peaks: 'Against the peers' (scripts/bench.py).\n")
    machine.publish("## Memory", text, args.write)


def table_row(case, got):
    mb = dict(got["stages"])
    model, batch = case.rsplit("-", 1)
    names = [name for name, _ in got["stages"]]
    after_first = mb[names[6]]
    return (f"| {model} b{batch} | {got['peak']:.0f} | {mb[names[2]]:.0f} | {mb[names[3]] - mb[names[2]]:.0f} "
            f"| {mb[names[5]] - mb[names[3]]:.0f} | {after_first - mb[names[5]]:.0f} | {got['winograd_mb']:.0f} "
            f"| {got['peak'] - after_first:.0f} |\n")


if __name__ == "__main__":
    main()
