"""A/B in one process: frozen VGG16's forward with every Winograd filter transform kept (A, the old rule)
against large ones transformed block by block in each chunk (B, winograd_filters.FILTER_BLOCK_BYTES).

    python scripts/ab_winograd_filters.py --rounds 5            # batch 8 and 1, rounds interleaved A, B, A, B...

Each round: per variant and batch, one untimed forward (re-transforms or drops the kept filters),
then `steps` timed ones; prints the median seconds per forward and B / A per batch (wall and process
CPU time).
"""
import argparse
import os
import sys
import time

import machine  # scripts/machine.py, beside this file
import numpy as np

from tlkit.engine.kernels import winograd_filters
from tlkit.zoo import VGG16


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", type=int, nargs="+", default=[8, 1])
    p.add_argument("--budgets-mb", type=float, nargs="+", default=[winograd_filters.FILTER_BLOCK_BYTES / 2**20],
                   help="B variants: FILTER_BLOCK_BYTES values to compare with A")
    args = p.parse_args()
    print(f"CPU: {machine.cpu_model()}; load before: {os.getloadavg()}")
    base = VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    base.trainable = False
    budgets = {"A kept": 1 << 40}
    budgets.update({f"B {mb:g} MB": int(mb * 2**20) for mb in args.budgets_mb})
    inputs = {n: np.random.default_rng(n).standard_normal((n, 224, 224, 3)).astype(np.float32) for n in args.batches}
    times = {(v, n): [] for v in budgets for n in args.batches}
    cpu = {(v, n): [] for v in budgets for n in args.batches}  # process CPU seconds: steadier when cores are shared
    outputs = {}
    for r in range(args.rounds):
        for variant, budget in budgets.items():
            winograd_filters.FILTER_BLOCK_BYTES = budget
            for n, x in inputs.items():
                outputs[variant, n] = base.predict_on_batch(x)
                steps = 3 if n >= 8 else 10
                for _ in range(steps):
                    t, c = time.perf_counter(), time.process_time()
                    base.predict_on_batch(x)
                    times[variant, n].append(time.perf_counter() - t)
                    cpu[variant, n].append(time.process_time() - c)
        print(f"round {r + 1}: " + ", ".join(f"{v} b{n} {np.median(ts[-3:]):.4f}s" for (v, n), ts in times.items()),
              flush=True)
    for n in args.batches:
        a = np.median(times["A kept", n])
        for variant in list(budgets)[1:]:
            b = np.median(times[variant, n])
            cpu_ratio = np.median(cpu[variant, n]) / np.median(cpu["A kept", n])
            diff = np.abs(outputs["A kept", n] - outputs[variant, n]).max() / np.abs(outputs["A kept", n]).max()
            print(f"batch {n}: A {a:.4f} s, {variant} {b:.4f} s per forward (median of {len(times[variant, n])}); "
                  f"B / A time {b / a:.3f}, CPU time {cpu_ratio:.3f}; outputs differ by {diff:.1e} of their scale")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
