"""Where a tlkit forward's peak memory goes (issue 16's bar: peak RSS of each forward <= the best peer's).

    python scripts/profile_memory.py                       # VGG16 b8 and b1, SqueezeNet b32 and b1
    python scripts/profile_memory.py --cases squeezenet-1 --maps      # + the biggest mappings per stage
    python scripts/profile_memory.py --cases squeezenet-1 vgg16-1 --settings on keep --rounds 3
    python scripts/profile_memory.py --write               # also BENCHMARKS.md's '## Memory' section

Each case runs in its own process, the way scripts/bench.py's worker does (model built with random
weights, weights set again from arrays, forward with predict_on_batch), and reads /proc/self/smaps
after each stage: the resident set split into anonymous memory (Python's objects, malloc's heap and
arenas, LLVM's in-memory state, arrays), LLVM's code (libllvmlite.so's file pages) and every other
file-backed page (libpython, numpy's and BLAS's libraries...), and the process's peak (VmHWM, the
figure scripts/bench.py reports). Beside it: the bytes the weights hold, the transformed
Winograd filters kept, numpy's own allocations at their peak during one forward (tracemalloc), the
heavy modules and shared libraries loaded, and the forward's time (first call: kernels loaded from
numba's cache; median of later calls). ``--settings on keep`` runs each case with tlkit's numba
memory settings (tlkit/utils/numba_memory.py) and without them (TLKIT_NUMBA_MEMORY=keep), rounds
interleaved, so the peaks and the forward times compare. Memory, unlike time, does not depend on
the machine's load.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import machine  # noqa: E402
CASES = ("vgg16-8", "vgg16-1", "squeezenet-32", "squeezenet-1")
HEAVY = ("scipy", "scipy.linalg", "h5py", "dask", "matplotlib", "PIL.Image", "threadpoolctl")
SETTINGS = {"on": None, "keep": "keep"}  # TLKIT_NUMBA_MEMORY for the worker
TIMED = {1: 20, 8: 4, 32: 6}  # forwards timed per batch size


def mapping_name(path):
    if not path:
        return "[anonymous mmap]"
    if path.startswith("["):
        return path
    return re.sub(r"\.cpython-\d+.*\.so$", ".so", os.path.basename(path))


def smaps():
    """{mapping name: [resident kB, anonymous kB]} of this process, mappings of one file summed."""
    got, name = {}, None
    with open("/proc/self/smaps") as f:
        for line in f:
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                fields = line.split(None, 5)
                name = mapping_name(fields[5].strip() if len(fields) > 5 else "")
                got.setdefault(name, [0, 0])
            elif line.startswith("Rss:"):
                got[name][0] += int(line.split()[1])
            elif line.startswith("Anonymous:"):
                got[name][1] += int(line.split()[1])
    return got


def snapshot(label):
    """One stage: RSS split into anonymous, LLVM's code, other files (MB), the peak so far, the mappings."""
    maps = smaps()
    rss = sum(r for r, _ in maps.values()) / 1024
    anon = sum(a for _, a in maps.values()) / 1024
    llvm = sum(r - a for name, (r, a) in maps.items() if name.startswith("libllvmlite")) / 1024
    return {"stage": label, "rss": rss, "anon": anon, "llvm_code": llvm, "other_files": rss - anon - llvm,
            "hwm": machine.peak_rss_mb(), "maps": {k: v for k, v in maps.items() if v[0] >= 256}}


def shared_libraries():
    """Names of the BLAS / OpenMP / LLVM libraries mapped into this process."""
    with open("/proc/self/maps") as f:
        paths = set(re.findall(r"\s(/\S+\.so[.\d]*)", f.read()))
    keep = ("blas", "gomp", "omp", "llvm", "tbb", "hdf5")
    return sorted({os.path.basename(p) for p in paths if any(k in os.path.basename(p).lower() for k in keep)})


def worker(case):
    import tracemalloc

    stages = [snapshot("python")]
    import numpy as np
    stages.append(snapshot("import numpy"))
    import numba  # noqa: F401
    stages.append(snapshot("import numba (+llvmlite)"))
    import tlkit  # noqa: F401
    from tlkit.zoo import SqueezeNet, VGG16
    stages.append(snapshot("import tlkit, tlkit.zoo"))
    model, batch = case.rsplit("-", 1)
    batch = int(batch)
    build = {"vgg16": lambda: VGG16(weights=None, include_top=False, input_shape=(224, 224, 3)),
             "squeezenet": lambda: SqueezeNet(weights=None, input_shape=(224, 224, 3))}[model]
    base = build()
    weights = base.get_weights()  # copies, like the arrays scripts/bench.py reads from its weight file
    weight_mb = sum(w.nbytes for w in weights) / 2**20
    base.set_weights(weights)
    del weights
    stages.append(snapshot("model built, set_weights (as scripts/bench.py)"))
    base.trainable = False
    x1 = np.random.default_rng(1).standard_normal((1, 224, 224, 3)).astype(np.float32)
    start = time.perf_counter()
    base.predict_on_batch(x1)
    first_s = time.perf_counter() - start
    stages.append(snapshot("first forward, batch 1 (kernels loaded or compiled)"))
    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    base.predict_on_batch(x)
    stages.append(snapshot(f"forward, batch {batch}"))
    tracemalloc.start()
    base.predict_on_batch(x)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times = []
    for _ in range(TIMED.get(batch, 4)):
        start = time.perf_counter()
        base.predict_on_batch(x)
        times.append(time.perf_counter() - start)
    stages.append(snapshot(f"{len(times) + 1} more forwards, batch {batch}"))
    wino_mb = sum(layer._wino_cache[1].nbytes for layer in base.layers if getattr(layer, "_wino_cache", None)) / 2**20
    print(json.dumps({"stages": stages, "peak": machine.peak_rss_mb(),
                      "weights_mb": weight_mb, "winograd_mb": wino_mb, "input_mb": x.nbytes / 2**20,
                      "traced_forward_peak_mb": traced_peak / 2**20, "first_forward_s": first_s,
                      "forward_s": statistics.median(times), "modules": [m for m in HEAVY if m in sys.modules],
                      "libraries": shared_libraries()}))


def report(case, setting, got, maps):
    print(f"\n## {case} ({setting}): peak RSS {got['peak']:.0f} MB; first forward {got['first_forward_s']:.3f} s, "
          f"then {1000 * got['forward_s']:.1f} ms (median)")
    print(f"  {'stage':<52} {'RSS':>6} {'anon':>6} {'LLVM code':>9} {'other files':>11} {'peak so far':>11}  (MB)")
    before = {}
    for s in got["stages"]:
        print(f"  {s['stage']:<52} {s['rss']:6.1f} {s['anon']:6.1f} {s['llvm_code']:9.1f} {s['other_files']:11.1f} "
              f"{s['hwm']:11.1f}")
        if maps:
            moved = sorted(((name, rss - before.get(name, [0, 0])[0], rss, anon) for name, (rss, anon) in s["maps"].items()),
                           key=lambda t: -abs(t[1]))
            for name, delta, rss, anon in moved[:maps]:
                if abs(delta) >= 512:
                    print(f"      {name:<48} {delta / 1024:+7.1f}  (now {rss / 1024:.1f}, anonymous {anon / 1024:.1f})")
        before = s["maps"]
    print(f"  weights (float32, as held by the layers)              {got['weights_mb']:7.1f} MB")
    print(f"  Winograd-transformed filters kept (small frozen 3x3)  {got['winograd_mb']:7.1f} MB")
    print(f"  input batch                                           {got['input_mb']:7.1f} MB")
    print(f"  numpy's allocations at their peak in one forward      {got['traced_forward_peak_mb']:7.1f} MB")
    print(f"  heavy modules loaded: {', '.join(got['modules']) or 'none'}")
    print(f"  libraries: {', '.join(got['libraries'])}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["on"],
                   help="tlkit's numba memory settings on (default) and/or off (keep), rounds interleaved")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--maps", type=int, default=0, help="show this many mappings that moved most at each stage")
    p.add_argument("--write", action="store_true", help="also rewrite BENCHMARKS.md's '## Memory' section")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker)
    runs = {}
    for _ in range(args.rounds):
        for case in args.cases:
            for setting in args.settings:
                env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
                env.pop("TLKIT_NUMBA_MEMORY", None)
                if SETTINGS[setting]:
                    env["TLKIT_NUMBA_MEMORY"] = SETTINGS[setting]
                done = subprocess.run([sys.executable, __file__, "--worker", case], capture_output=True, text=True,
                                      env=env)
                if done.returncode:
                    sys.exit(f"{case} failed:\n{done.stderr[-2000:]}")
                got = json.loads(done.stdout.strip().splitlines()[-1])
                report(case, setting, got, args.maps)
                runs.setdefault((case, setting), []).append(got)
    rows = "".join(table_row(case, setting, got) for (case, setting), got in runs.items())
    text = (f"CPU: {machine.cpu_model()} (lscpu); memory does not depend on the load. Peak RSS (VmHWM) of a process "
            "that builds the base (random weights), runs one forward at batch 1, then more at the batch of the case; "
            "RSS after each stage, split into anonymous memory / LLVM's code pages / other file-backed pages (MB); "
            f"forward times: first call (kernels from numba's cache), then the median; {args.rounds} round(s).\n\n"
            "| case | numba memory settings | peak | python + numpy + numba | + tlkit, zoo | + model | after the first "
            "forward (anon / LLVM code / other files) | peak - that | first forward s | forward ms |\n"
            "|---|---|---:|---:|---:|---:|---|---:|---:|---:|\n" + rows
            + "\nWhat numba's runtime costs and what tlkit gives back: tlkit/utils/numba_memory.py. Peers' peaks: "
            "'Against the peers' (scripts/bench.py).\n")
    machine.publish("## Memory", text, args.write)


def table_row(case, setting, runs):
    model, batch = case.rsplit("-", 1)
    stages = runs[-1]["stages"]
    first = stages[5]
    return (f"| {model} b{batch} | {setting} | {max(r['peak'] for r in runs):.0f} | {stages[2]['rss']:.0f} "
            f"| {stages[3]['rss'] - stages[2]['rss']:+.0f} | {stages[4]['rss'] - stages[3]['rss']:+.0f} "
            f"| {first['rss']:.0f} ({first['anon']:.0f} / {first['llvm_code']:.0f} / {first['other_files']:.0f}) "
            f"| {max(r['peak'] for r in runs) - first['rss']:.0f} "
            f"| {statistics.median(r['first_forward_s'] for r in runs):.2f} "
            f"| {1000 * statistics.median(r['forward_s'] for r in runs):.1f} |\n")


if __name__ == "__main__":
    main()
