"""A/B: does a model of built-in layers train as fast on this tree as on a base commit?

The op tape shares the layer records' walk; this measures fit() steps of a small CNN (Conv2D, pooling,
Dense: the fused kernels) in both trees, in interleaved rounds (each round a fresh process per tree, so
load from other processes hits both alike), and prints per-round times, medians and the ratio.

    python scripts/ab_fused_training.py --base f6908d6 --rounds 7
"""
import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile

CHILD = r"""
import sys, time, numpy as np, tlkit
from tlkit import layers as L
rng = np.random.default_rng(0)
x = rng.standard_normal((512, 32, 32, 3)).astype(np.float32)
y = rng.integers(0, 10, 512)
model = tlkit.Sequential([tlkit.Input((32, 32, 3)), L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(),
                          L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                          L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)  # compile the kernels
t = time.perf_counter()
model.fit(x, y, batch_size=32, epochs=int(sys.argv[1]), verbose=0)
print(time.perf_counter() - t)
"""


def run(tree, epochs):
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run([sys.executable, "-c", CHILD, str(epochs)], env=env, cwd=tree, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="f6908d6", help="commit to compare against")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs of 16 steps per process")
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as base_tree:
        archive = os.path.join(base_tree, "base.tar")
        subprocess.run(["git", "-C", here, "archive", "-o", archive, args.base], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(base_tree, filter="data")
        times = {"base": [], "this": []}
        for r in range(args.rounds):
            for name, tree in (("base", base_tree), ("this", here)) if r % 2 == 0 else \
                    (("this", here), ("base", base_tree)):
                times[name].append(run(tree, args.epochs))
            print(f"round {r + 1}/{args.rounds}: base {times['base'][-1]:.3f}s  this {times['this'][-1]:.3f}s",
                  flush=True)
    mb, mt = statistics.median(times["base"]), statistics.median(times["this"])
    ratios = [t / b for t, b in zip(times["this"], times["base"])]
    print(f"median fit time ({args.epochs} epochs x 16 steps): base {mb:.3f}s, this {mt:.3f}s, this/base {mt / mb:.3f} "
          f"(per-round ratios {min(ratios):.3f}-{max(ratios):.3f}); fastest round: base {min(times['base']):.3f}s, "
          f"this {min(times['this']):.3f}s (the least disturbed by other load)")


if __name__ == "__main__":
    main()
