"""tlkit's split products (tlkit.utils.threads.matmul: BLAS on one thread per part, parts on tlkit's
own blocking threads) against the BLAS's own threads, on the product shapes VGG16 and SqueezeNet
produce. Both ways run in this one process, in alternating rounds, so a busy spell hits both.

    python scripts/bench_products.py            # ~1 min
    python scripts/bench_products.py --rounds 9

This is the check that the thread-pool fix costs no solo speed: on a quiet machine the ratio
column should be ~1.0x or above; on a busy one the BLAS's own spinning threads fall far behind.
"""
import argparse
import pathlib
import statistics
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import machine  # noqa: E402
from tlkit.utils import threads  # noqa: E402

SHAPES = [  # (a, b): Winograd stacks of VGG16 b8 blocks 1/3/5, an im2col tile, SqueezeNet b32 1x1 convs
    ((36, 2000, 64), (36, 64, 64)), ((36, 1000, 256), (36, 256, 256)), ((36, 300, 512), (36, 512, 512)),
    ((4096, 576), (576, 64)), ((96800, 64), (64, 16)), ((23328, 16), (16, 64)), ((2704, 512), (512, 64)),
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--write", action="store_true", help="also rewrite BENCHMARKS.md's '## Products' section")
    args = p.parse_args()
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    ops = []
    for sa, sb in SHAPES:
        a, b = rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)
        ops.append((a, b, np.empty(sa[:-1] + (sb[-1],), np.float32)))
    cores = threads.num_threads()
    got = {}
    load_before = machine.loadavg()
    for _ in range(args.rounds):
        for i, (a, b, out) in enumerate(ops):
            with threadpool_limits(cores, user_api="blas"):
                got.setdefault((i, "blas"), []).append(machine.best_seconds(lambda: np.matmul(a, b, out=out)))
            with threadpool_limits(1, user_api="blas"):
                got.setdefault((i, "split"), []).append(machine.best_seconds(lambda: threads.matmul(a, b, out)))
    lines = [f"{machine.header(load_before=load_before)}; median of {args.rounds} rounds, best of 5 calls each\n",
             f"| product | BLAS's own {cores} threads GFLOP/s | tlkit split GFLOP/s | split / BLAS |",
             "|---|---:|---:|---:|"]
    for i, (a, b, _) in enumerate(ops):
        flops = 2 * np.prod(a.shape[:-1]) * a.shape[-1] * b.shape[-1]
        own, split = statistics.median(got[(i, "blas")]), statistics.median(got[(i, "split")])
        lines.append(f"| {a.shape} @ {b.shape} | {flops / own / 1e9:.1f} | {flops / split / 1e9:.1f} | {own / split:.2f}x |")
    machine.publish("## Products", "\n".join(lines) + "\n", args.write)

if __name__ == "__main__":
    main()
