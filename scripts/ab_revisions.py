"""tlkit against itself: this worktree's code (B) against an earlier commit's (A), on the forward
passes of issue 16's cases, each run in its own process, rounds interleaved (A, B, A, B, ...) so
a busy spell on a shared machine hits both. The ratio B / A is what a change bought.

    python scripts/ab_revisions.py --base main                      # every case, 3 rounds
    python scripts/ab_revisions.py --base 06ca1bd --cases squeezenet-32 --rounds 5
    python scripts/ab_revisions.py --base 0e01cc2 --cases resnet50-1 mobilenet_v2-1 --steps 15

The base commit's tlkit is exported (git archive) into a temporary folder; the models use random
weights (speed does not depend on them). Each process: build, 2 warm-up calls, then the median
of --steps timed predict_on_batch calls, wall time and the process's CPU time (all its threads):
on a busy machine the CPU time per step is the steadier measure of the work a version does.
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import machine  # noqa: E402

CASES = {"squeezenet-32": ("SqueezeNet", 32), "squeezenet-1": ("SqueezeNet", 1),
         "vgg16-8": ("VGG16", 8), "vgg16-1": ("VGG16", 1),
         "resnet50-32": ("ResNet50", 32), "resnet50-1": ("ResNet50", 1), "mobilenet_v2-1": ("MobileNetV2", 1),
         "efficientnet_lite0-1": ("EfficientNetLite0", 1)}

WORKER = """
import json, statistics, sys, time
import numpy as np
import tlkit
from tlkit import zoo
arch, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tlkit.utils.set_random_seed(0)
base = getattr(zoo, arch)(weights=None, include_top=False, input_shape=(224, 224, 3))
base.trainable = False
x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
for _ in range(2):
    y = base.predict_on_batch(x)
times, cpu = [], []
for _ in range(steps):
    t, c = time.perf_counter(), time.process_time()
    base.predict_on_batch(x)
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
print(json.dumps({"seconds": statistics.median(times), "cpu": statistics.median(cpu),
                  "checksum": float(np.abs(y).sum())}))
"""


def run(tree, arch, batch, steps):
    env = dict(machine.peer_env(), PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", WORKER, arch, str(batch), str(steps)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker for {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the commit (or branch) to compare against")
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.base, "tlkit"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        trees = {"A": pathlib.Path(tmp), "B": REPO}
        load_before = machine.loadavg()
        got = {}
        for _ in range(args.rounds):
            for case in args.cases:
                arch, batch = CASES[case]
                for side, tree in trees.items():
                    r = run(tree, arch, batch, args.steps)
                    got.setdefault((case, side), []).append(r)
        print(f"{machine.header(load_before=load_before)}; A = {args.base}, B = this worktree; median of "
              f"{args.rounds} interleaved rounds of {args.steps} timed steps\n")
        print("| case | A img/s | B img/s | B / A (per-round range) | A CPU ms/step | B CPU ms/step | outputs agree |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for case in args.cases:
            batch = CASES[case][1]
            a = [r["seconds"] for r in got[(case, "A")]]
            b = [r["seconds"] for r in got[(case, "B")]]
            ratios = [x / y for x, y in zip(a, b)]
            cpu = [statistics.median(r["cpu"] for r in got[(case, s)]) * 1e3 for s in "AB"]
            sums = [got[(case, s)][0]["checksum"] for s in "AB"]
            agree = abs(sums[0] - sums[1]) <= 1e-4 * max(abs(sums[0]), 1e-12)
            print(f"| {case} | {batch / statistics.median(a):.1f} | {batch / statistics.median(b):.1f} | "
                  f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
                  f"{cpu[0]:.0f} | {cpu[1]:.0f} | {'yes' if agree else 'NO'} |")


if __name__ == "__main__":
    main()
