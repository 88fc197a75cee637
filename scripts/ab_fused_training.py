"""A/B: does a model of built-in layers train as fast on this tree as on a base commit (issue 17)?

Both trees are imported into ONE process, each under the name ``tlkit`` while it runs (the other tree's
modules are parked outside ``sys.modules`` meanwhile, so lazy imports inside either tree resolve to its
own files). The same small CNN (Conv2D, pooling, Dense: the fused kernels; identical weights and data in
both) trains with ``fit`` in short blocks alternating A B B A A B ..., so drifts of the machine (clock,
other load) hit both trees alike. A block's figure is the process's CPU time (``time.process_time``,
all threads) per training step of ``fit``, so descheduling does not count. The numba and BLAS thread
counts are pinned equal for both trees (``--threads``, default 1: CPU time is then the work itself).

Each round loads and runs first the other tree (ABBA, then BAAB), after an untimed block of each.
Each of ``--rounds`` processes gives one ratio this/base (median of its B blocks over median of its A
blocks); differences between processes (memory layout, caches) are sampled by the rounds. The answer:
the median ratio over the rounds and a 95% bootstrap interval (rounds resampled, then blocks within
each). "No slower" holds within the measurement when the interval's upper end is <= ~1.02.

    python scripts/ab_fused_training.py --base f6908d6 --rounds 24 --blocks 8 --epochs 1   # ~4 min

(--epochs: epochs of 16 steps per block; --threads 2 also prints wall time per step; --size 10 --batch 4:
a step of almost no arithmetic, i.e. the per-step Python cost of fit, the layers and the tape.)
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import machine  # noqa: E402

STEPS_PER_EPOCH = 16  # 512 samples, batch 32


def _modules(prefix="tlkit"):
    return {k: m for k, m in sys.modules.items() if k == prefix or k.startswith(prefix + ".")}


class Tree:
    """One checkout's tlkit, importable as ``tlkit`` while ``with tree:`` is active."""

    def __init__(self, path):
        self.path = str(path)
        self.modules = {}

    def __enter__(self):
        assert not _modules(), "another tree is active"
        sys.modules.update(self.modules)
        sys.path.insert(0, self.path)
        return self

    def __exit__(self, *exc):
        sys.path.remove(self.path)
        self.modules = _modules()
        for name in self.modules:
            del sys.modules[name]
        return False


def _model(tlkit, size):
    L = tlkit.layers
    model = tlkit.Sequential([tlkit.Input((size, size, 3)), L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(),
                              L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                              L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def child(base_path, this_path, first, blocks, epochs, size, batch):
    """One round: both trees in this process, blocks interleaved; prints JSON of per-step times."""
    import time

    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS_PER_EPOCH * batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 10, STEPS_PER_EPOCH * batch)
    trees = {"base": Tree(base_path), "this": Tree(this_path)}
    models, weights = {}, None
    for name in (first, "this" if first == "base" else "base"):  # the first tree also loads first
        with trees[name] as tree:
            import tlkit

            assert os.path.dirname(os.path.dirname(tlkit.__file__)) == tree.path, tlkit.__file__
            model = _model(tlkit, size)
            model.fit(x[:2 * batch], y[:2 * batch], batch_size=batch, epochs=1, verbose=0)  # compile / load the kernels
            if weights is None:
                weights = [w.copy() for w in model.get_weights()]
            model.set_weights(weights)  # same numbers in both trees
            models[name] = model
    out = {"base": {"cpu": [], "wall": []}, "this": {"cpu": [], "wall": []}}
    # ABBA (BAAB in every other round): a linear drift hits both alike, and so does being first.
    order = ["base", "this", "this", "base"] if first == "base" else ["this", "base", "base", "this"]
    for name in order[:2]:  # an untimed block each: caches and allocator in their steady state
        with trees[name]:
            models[name].fit(x, y, batch_size=batch, epochs=1, verbose=0)
    for b in range(2 * blocks):
        name = order[b % 4]
        with trees[name]:
            w, c = time.perf_counter(), time.process_time()
            models[name].fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
            c, w = time.process_time() - c, time.perf_counter() - w
        steps = epochs * STEPS_PER_EPOCH
        out[name]["cpu"].append(c / steps)
        out[name]["wall"].append(w / steps)
    print(json.dumps(out))


def _bootstrap(rounds, key, reps=10000, seed=0):
    """Median over rounds of (median this / median base), and its 95% interval: rounds resampled,
    then each chosen round's blocks resampled."""
    rng = np.random.default_rng(seed)
    point = float(np.median([np.median(r["this"][key]) / np.median(r["base"][key]) for r in rounds]))
    stats = np.empty(reps)
    for i in range(reps):
        ratios = []
        for j in rng.integers(0, len(rounds), len(rounds)):
            a, b = np.asarray(rounds[j]["base"][key]), np.asarray(rounds[j]["this"][key])
            ratios.append(np.median(rng.choice(b, len(b))) / np.median(rng.choice(a, len(a))))
        stats[i] = np.median(ratios)
    return point, float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="f6908d6", help="commit to compare against")
    parser.add_argument("--rounds", type=int, default=8, help="processes, each with both trees")
    parser.add_argument("--blocks", type=int, default=12, help="timed blocks per tree in each process")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of 16 steps per block")
    parser.add_argument("--threads", type=int, default=1, help="numba threads of both trees (BLAS: 1)")
    parser.add_argument("--size", type=int, default=32, help="image side (>= 10); a small one leaves mostly the "
                        "per-step Python cost")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.blocks, args.epochs, args.size, args.batch)
    print(f"CPU: {machine.cpu_model()}, load before: {machine.loadavg()}", flush=True)
    env = dict(os.environ, NUMBA_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("PYTHONPATH", None)
    rounds = []
    with tempfile.TemporaryDirectory() as base_tree:
        archive = os.path.join(base_tree, "base.tar")
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", archive, args.base], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(base_tree, filter="data")
        for r in range(args.rounds):
            first = "base" if r % 2 == 0 else "this"
            proc = subprocess.run([sys.executable, __file__, "--child", base_tree, str(REPO), first, "--blocks",
                                   str(args.blocks), "--epochs", str(args.epochs), "--size", str(args.size),
                                   "--batch", str(args.batch)],
                                  env=env, cwd=base_tree, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"round {r + 1} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            rounds.append(res)
            mb, mt = np.median(res["base"]["cpu"]), np.median(res["this"]["cpu"])
            print(f"round {r + 1}/{args.rounds} ({first} first): CPU ms/step base {1e3 * mb:.3f}  this {1e3 * mt:.3f}  "
                  f"this/base {mt / mb:.4f}", flush=True)
    steps = args.blocks * args.epochs * STEPS_PER_EPOCH
    print(f"{args.size}x{args.size}x3 images, batch {args.batch}; "
          f"{args.rounds} rounds x {args.blocks} blocks x {args.epochs} epochs x {STEPS_PER_EPOCH} steps per tree "
          f"({steps} steps per tree per round), numba threads {args.threads}, BLAS threads 1")
    for key in ("cpu", "wall") if args.threads > 1 else ("cpu",):
        base = np.median([np.median(r["base"][key]) for r in rounds])
        this = np.median([np.median(r["this"][key]) for r in rounds])
        point, lo, hi = _bootstrap(rounds, key)
        print(f"{key} ms/step (median of rounds): base {1e3 * base:.3f}, this {1e3 * this:.3f}; this/base median "
              f"{point:.4f}, 95% interval {lo:.4f}-{hi:.4f}")
    print(f"load after: {machine.loadavg()}")


if __name__ == "__main__":
    main()
