"""A/B of the direct small-window conv (and its fused max pooling) against im2col + BLAS.

    python scripts/bench_direct_conv.py            # SqueezeNet conv1+pool1 (batch 32), VGG16 block1_conv1 (batch 8)
    python scripts/bench_direct_conv.py --sweep    # crossover in K = kh*kw*C and F (direct_conv.MAX_K*)

Old path: conv._direct (tiled im2col + BLAS product + bias/ReLU pass), then max_pool2d_forward.
New: conv2d_forward's direct route, and conv2d_maxpool_forward's fused kernel. Variants run
interleaved in one process, so load from other processes hits them alike; compare ratios.

Spinning threads: after a product OpenBLAS's threads busy-wait (~0.1 s), slowing a numba kernel
that runs next by ~45% on 2 cores, so interleaving charges a variant for its predecessor's
threads. The thresholds in direct_conv were set from spin-free runs:

    OPENBLAS_THREAD_TIMEOUT=4 OMP_WAIT_POLICY=passive python scripts/bench_direct_conv.py --sweep
"""
import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from tlkit.engine.kernels import conv, direct_conv
from tlkit.engine.kernels.pool import max_pool2d_forward


def old_conv(x, w, b, strides, padding, relu=True, out=None):
    g = conv._Geometry(x.shape, w.shape[:2], strides, padding, (1, 1), "bench")
    return conv._direct(x, w.reshape(-1, w.shape[3]), b, g.window, g.pad_top, g.pad_left, (g.oh, g.ow), relu, out)


def new_conv(x, w, b, strides, padding, relu=True, out=None):
    """conv2d_forward's direct route, taken whatever direct_conv.MAX_K says."""
    saved = direct_conv.MAX_K, direct_conv.MAX_K_STRIDED
    direct_conv.MAX_K = direct_conv.MAX_K_STRIDED = 1 << 30
    try:
        return conv.conv2d_forward(x, w, b, strides, padding, relu=relu, out=out)
    finally:
        direct_conv.MAX_K, direct_conv.MAX_K_STRIDED = saved


SETTLE = 0.0


def run(variants, reps):
    """{name: median seconds}, the variants interleaved rep by rep after one warm-up call each,
    each timed call SETTLE seconds after the previous one ended (see --settle)."""
    times = {name: [] for name in variants}
    for fn in variants.values():
        fn()
    for _ in range(reps):
        for name, fn in variants.items():
            time.sleep(SETTLE)
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(t)) for name, t in times.items()}


def report(title, medians, base):
    print(title)
    for name, t in medians.items():
        print(f"  {name:<34} {t * 1e3:8.1f} ms   x{medians[base] / t:5.2f} vs {base}")


def layers(reps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 224, 224, 3)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 3, 64)) * 0.2).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32) * 0.1
    pool = ((3, 3), (2, 2), "valid")
    y = np.empty((32, 111, 111, 64), np.float32)  # a reused buffer: no page faults on a fresh 101 MB
    fused = conv.conv2d_maxpool_forward(x, w, b, 2, "valid", True, *pool)
    unfused = max_pool2d_forward(old_conv(x, w, b, (2, 2), "valid"), *pool, with_argmax=False)[0]
    print(f"max |fused - old| / max |old| = {np.abs(fused - unfused).max() / np.abs(unfused).max():.1e}")
    report("SqueezeNet conv1 (3x3/2, 3->64, relu) + pool1 (3x3/2), batch 32, 224x224", run({
        "old: im2col+BLAS, then pool": lambda: max_pool2d_forward(old_conv(x, w, b, (2, 2), "valid"), *pool,
                                                                  with_argmax=False),
        "new: direct conv, then pool": lambda: max_pool2d_forward(new_conv(x, w, b, (2, 2), "valid"), *pool,
                                                                  with_argmax=False),
        "new: fused conv+pool": lambda: conv.conv2d_maxpool_forward(x, w, b, 2, "valid", True, *pool),
        "old conv alone": lambda: old_conv(x, w, b, (2, 2), "valid"),
        "new conv alone": lambda: new_conv(x, w, b, (2, 2), "valid"),
        "old conv alone, into a reused out": lambda: old_conv(x, w, b, (2, 2), "valid", out=y),
        "new conv alone, into a reused out": lambda: new_conv(x, w, b, (2, 2), "valid", out=y),
    }, reps), "old: im2col+BLAS, then pool")
    x = x[:8]
    y = np.empty((8, 224, 224, 64), np.float32)
    report("VGG16 block1_conv1 (3x3/1 same, 3->64, relu), batch 8, 224x224", run({
        "old: im2col+BLAS": lambda: old_conv(x, w, b, (1, 1), "same"),
        "new: direct": lambda: new_conv(x, w, b, (1, 1), "same"),
        "old: im2col+BLAS, into a reused out": lambda: old_conv(x, w, b, (1, 1), "same", out=y),
        "new: direct, into a reused out": lambda: new_conv(x, w, b, (1, 1), "same", out=y),
    }, reps), "old: im2col+BLAS")


def sweep(reps):
    """old/new ratios over K (3x3 windows over C channels) and F: conv alone, and conv + 3x3/2 max pool."""
    rng = np.random.default_rng(0)
    saved = direct_conv.MAX_K_POOLED, direct_conv.MAX_FILTERS
    direct_conv.MAX_K_POOLED = direct_conv.MAX_FILTERS = 1 << 30
    filters = (16, 32, 64, 128)
    print("old/new time ratios (> 1: the direct kernel wins), 3x3 stride 1 'same', batch 8, 64x64;")
    print("'conv': direct vs im2col+BLAS; 'pool': fused vs im2col+BLAS then a 3x3/2 max pool")
    print("   K   C " + "".join(f"  F={f:<3} conv  pool" for f in filters))
    pool = ((3, 3), (2, 2), "valid")
    for ch in (1, 3, 4, 6, 8, 12, 16):
        x = rng.standard_normal((8, 64, 64, ch)).astype(np.float32)
        cells = []
        for f in filters:
            w = rng.standard_normal((3, 3, ch, f)).astype(np.float32)
            b = np.zeros(f, np.float32)
            m = run({"old": lambda: old_conv(x, w, b, (1, 1), "same"),
                     "new": lambda: new_conv(x, w, b, (1, 1), "same"),
                     "old+pool": lambda: max_pool2d_forward(old_conv(x, w, b, (1, 1), "same"), *pool,
                                                            with_argmax=False),
                     "fused": lambda: conv.conv2d_maxpool_forward(x, w, b, 1, "same", True, *pool)}, reps)
            cells.append(f"  {m['old'] / m['new']:10.2f} {m['old+pool'] / m['fused']:5.2f}")
        print(f"{9 * ch:4d} {ch:3d} " + "".join(cells))
    direct_conv.MAX_K_POOLED, direct_conv.MAX_FILTERS = saved


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", action="store_true", help="K x F crossover table instead of the two layers")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds to wait before each timed call: OpenBLAS threads busy-wait for a while after "
                             "a product (and OpenMP ones after a numba kernel), slowing whatever runs next. For "
                             "spin-free timings run with OPENBLAS_THREAD_TIMEOUT=4 OMP_WAIT_POLICY=passive.")
    args = parser.parse_args()
    SETTLE = args.settle
    sweep(args.reps) if args.sweep else layers(args.reps)
