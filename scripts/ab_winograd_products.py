"""A/B in one process: Winograd's products through BLAS (A) against gemm_blocks' micro-kernel on packed
planes (B, kernels/winograd_products.py), whole frozen forwards, rounds interleaved A, B, A, B...

    python scripts/ab_winograd_products.py --rounds 5                       # VGG16 b8 + b1, SqueezeNet b32
    python scripts/ab_winograd_products.py --rounds 5 --rules               # B's routing rules off (A) / on (B)
    python scripts/ab_winograd_products.py --products                       # one thread, the products alone

--rules: both variants through the micro-kernel; A without its two rules (small filters as whole chunks
per thread, PER_THREAD_FILTER_BYTES; filters transformed every call over few tiles to im2col,
MIN_TILES_UNKEPT), B with them.

Per round and variant: one untimed forward, then a few timed ones; prints each round's medians, then
per case the median over rounds, B / A and the per-round B / A range.
"""
import argparse
import os
import sys
import time

import machine  # scripts/machine.py, beside this file
import numpy as np

from tlkit.engine.kernels import gemm_blocks, winograd_products
from tlkit.zoo import VGG16, SqueezeNet

CASES = {"vgg16-8": (VGG16, 8, 3), "vgg16-1": (VGG16, 1, 10), "squeezenet-32": (SqueezeNet, 32, 10)}


def products_alone():
    """One thread: the 36 products of a chunk through BLAS (np.matmul on the stack) and gemm_blocks."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    rng = np.random.default_rng(0)
    for t, c, f in [(1568, 64, 64), (784, 128, 128), (900, 256, 256), (392, 512, 512), (128, 512, 512)]:
        v = rng.standard_normal((36, t, c)).astype(np.float32)
        u = rng.standard_normal((36, c, f)).astype(np.float32)
        m = np.empty((36, t, f), np.float32)
        planes = winograd_products.pack_planes(u)
        rates = {}
        for name, run in (("BLAS", lambda: np.matmul(v, u, m)), ("gemm_blocks", lambda: winograd_products.products(
                v, t, planes, m))):
            run()
            best = min(_timed(run) for _ in range(7))
            rates[name] = 36 * t * c * f * 2 / best / 1e9
        print(f"{t} tiles x {c} -> {f}: BLAS {rates['BLAS']:.0f} GFLOP/s, gemm_blocks {rates['gemm_blocks']:.0f}")


def _timed(run):
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--products", action="store_true", help="only the products, one thread")
    p.add_argument("--rules", action="store_true", help="A: the micro-kernel route without its rules; B: with")
    args = p.parse_args()
    print(f"CPU: {machine.cpu_model()}; load before: {os.getloadavg()}; lanes {gemm_blocks.lanes()}")
    if args.products:
        products_alone()
        return
    models, inputs = {}, {}
    for case in args.cases:
        build, n, _ = CASES[case]
        key = build.__name__
        if key not in models:
            models[key] = build(weights=None, include_top=False, input_shape=(224, 224, 3))
            models[key].trainable = False
        inputs[case] = np.random.default_rng(n).standard_normal((n, 224, 224, 3)).astype(np.float32)
    rules = (winograd_products.PER_THREAD_FILTER_BYTES, winograd_products.MIN_TILES_UNKEPT)
    variants = {"A": (False, rules), "B": (True, rules)}
    if args.rules:
        variants = {"A": (True, (0, 0)), "B": (True, rules)}
    times = {(v, c): [] for v in variants for c in args.cases}
    outputs = {}
    for r in range(args.rounds):
        for case in args.cases:
            build, n, steps = CASES[case]
            for variant, (on, (per_thread, unkept)) in variants.items():
                winograd_products.ENABLED = on
                winograd_products.PER_THREAD_FILTER_BYTES, winograd_products.MIN_TILES_UNKEPT = per_thread, unkept
                model = models[build.__name__]
                outputs[variant, case] = model.predict_on_batch(inputs[case])
                ts = []
                for _ in range(steps):
                    t = time.perf_counter()
                    model.predict_on_batch(inputs[case])
                    ts.append(time.perf_counter() - t)
                times[variant, case].append(float(np.median(ts)))
        print(f"round {r + 1}: " + ", ".join(f"{v} {c} {ts[-1] * 1e3:.1f} ms" for (v, c), ts in times.items()),
              flush=True)
    for case in args.cases:
        a, b = np.array(times["A", case]), np.array(times["B", case])
        ref = outputs["A", case]
        diff = np.abs(ref - outputs["B", case]).max() / np.abs(ref).max()
        print(f"{case}: A {np.median(a) * 1e3:.1f} ms, B {np.median(b) * 1e3:.1f} ms; B / A {np.median(b / a):.3f} "
              f"(rounds {np.min(b / a):.3f}-{np.max(b / a):.3f}, B faster in {int(np.sum(b < a))} of {len(a)}); "
              f"outputs differ by {diff:.1e} of their scale")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
