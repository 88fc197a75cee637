"""The register-blocked 1x1 product (tlkit/engine/kernels/gemm_blocks.py) against BLAS's product + the
epilogue pass, on one thread, hot, on the 1x1 shapes SqueezeNet (a group of 4 images) and
MobileNetV2 / EfficientNet-Lite0 (batch 32 bands and batch 1) run. Both ways alternate in rounds in
this one process; GFLOP/s are each round's best of several calls, medians over the rounds.

    python scripts/bench_gemm_blocks.py                     # ~1 min
    python scripts/bench_gemm_blocks.py --rounds 7 --shapes squeezenet
    python scripts/bench_gemm_blocks.py --blocks 12x2 8x3 6x4   # other block shapes (rows x vectors)
    python scripts/bench_gemm_blocks.py --shapes depths widths --blocks 12x2 8x3 6x4 14x1   # the CPU rules' cases
"""
import argparse
import pathlib
import statistics
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import machine  # noqa: E402

# (name, rows, K, F, output row stride / F): SqueezeNet 1.1's squeeze / expand1x1 at a group of 4
# images (expand1x1 writes half of the concatenated output's row), MobileNetV2's expand / project
# products at batch 32 (whole layers and ~1 MB bands) and batch 1.
SHAPES = {
    "squeezenet": [
        ("fire2/squeeze", 12100, 64, 16, 1), ("fire2/expand1x1", 12100, 16, 64, 2),
        ("fire3/squeeze", 12100, 128, 16, 1), ("fire4/squeeze", 2916, 128, 32, 1),
        ("fire4/expand1x1", 2916, 32, 128, 2), ("fire5/squeeze", 2916, 256, 32, 1),
        ("fire6/squeeze", 676, 256, 48, 1), ("fire6/expand1x1", 676, 48, 192, 2),
        ("fire7/squeeze", 676, 384, 48, 1), ("fire8/squeeze", 676, 384, 64, 1),
        ("fire8/expand1x1", 676, 64, 256, 2), ("fire9/squeeze", 676, 512, 64, 1)],
    "mobilenet": [
        ("28x28 expand 32->192 b32", 25088, 32, 192, 1), ("28x28 project 192->32 b32", 25088, 192, 32, 1),
        ("14x14 expand 64->384 b32", 6272, 64, 384, 1), ("14x14 project 384->64 b32", 6272, 384, 64, 1),
        ("14x14 expand 96->576 b32", 6272, 96, 576, 1), ("14x14 project 576->96 b32", 6272, 576, 96, 1),
        ("7x7 expand 160->960 b32", 1568, 160, 960, 1), ("7x7 project 960->160 b32", 1568, 960, 160, 1),
        ("7x7 320->1280 b32", 1568, 320, 1280, 1),
        ("band 28x28 expand 32->192", 1344, 32, 192, 1), ("band 14x14 project 384->64", 588, 384, 64, 1),
        ("band 7x7 project 960->160", 245, 960, 160, 1), ("band 56x56 project 144->24", 1568, 144, 24, 1),
        ("band 56x56 expand 24->144", 1568, 24, 144, 1), ("band 28x28 project 240->40 (EfficientNet)", 784, 240, 40, 1),
        ("band 14x14 project 672->112 (EfficientNet)", 392, 672, 112, 1),
        ("28x28 expand 32->192 b1", 784, 32, 192, 1), ("14x14 project 384->64 b1", 196, 384, 64, 1),
        ("7x7 expand 160->960 b1", 49, 160, 960, 1), ("7x7 320->1280 b1", 49, 320, 1280, 1)],
    "resnet": [  # ResNet50's 1x1 convs as pointwise_conv's tiles (512 KB of output) at batch 32
        ("56x56 256->64", 2048, 256, 64, 1), ("56x56 64->256", 512, 64, 256, 1),
        ("28x28 512->128", 1024, 512, 128, 1), ("28x28 128->512", 256, 128, 512, 1),
        ("14x14 1024->256", 512, 1024, 256, 1), ("14x14 256->1024", 128, 256, 1024, 1),
        ("7x7 2048->512", 256, 2048, 512, 1), ("7x7 512->2048", 64, 512, 2048, 1)],
    "deep": [  # K past 1024; rows 4 KB apart or not
        ("band 7x7 project 1152->192 (EfficientNet)", 196, 1152, 192, 1),
        ("band 7x7 project 1152->320 (EfficientNet)", 196, 1152, 320, 1),
        ("K 1000", 512, 1000, 256, 1), ("K 1280", 512, 1280, 256, 1), ("K 2000", 256, 2000, 512, 1)],
    "depths": [  # LIMIT_K's crossover: K from 1024 to 2048 at two widths
        ("K 1024 F 512", 256, 1024, 512, 1), ("K 1280 F 512", 256, 1280, 512, 1),
        ("K 1536 F 256", 512, 1536, 256, 1), ("K 1536 F 512", 256, 1536, 512, 1),
        ("K 1792 F 256", 512, 1792, 256, 1), ("K 1792 F 512", 256, 1792, 512, 1),
        ("K 2048 F 256", 512, 2048, 256, 1), ("K 2048 F 1024", 128, 2048, 1024, 1)],
    "widths": [  # the models' F not a multiple of 64, where the block shapes pad differently
        ("F 16", 1024, 256, 16, 1), ("F 24", 1024, 256, 24, 1), ("F 40", 1024, 256, 40, 1),
        ("F 80", 1024, 256, 80, 1), ("F 96", 1024, 256, 96, 1), ("F 112", 1024, 256, 112, 1),
        ("F 144", 1024, 256, 144, 1), ("F 160", 1024, 256, 160, 1), ("F 240", 1024, 256, 240, 1),
        ("F 480", 512, 256, 480, 1), ("F 672", 512, 256, 672, 1), ("F 960", 512, 256, 960, 1)],
}


def best_of(call, calls):
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--blocks", nargs="*", default=[], help="extra block shapes ROWSxVECTORS to time too")
    p.add_argument("--lanes", type=int, default=None, help="vector width (8 or 16; default: the CPU's)")
    args = p.parse_args()
    from threadpoolctl import threadpool_limits

    from tlkit.engine.kernels import gemm_blocks
    from tlkit.engine.kernels.epilogue import _epilogue_serial

    print(machine.header())
    rng = np.random.default_rng(0)
    cases = []
    for group in args.shapes:
        for name, m, k, f, stride in SHAPES[group]:
            x = rng.standard_normal((m, k), dtype=np.float32)
            w = (rng.standard_normal((k, f), dtype=np.float32) / np.sqrt(k)).astype(np.float32)
            b = rng.standard_normal(f, dtype=np.float32)
            y = np.empty((m, f * stride), np.float32)[:, :f]
            packs = {"default": gemm_blocks.pack(w, b, args.lanes)}
            for spec in args.blocks:
                packs[spec] = gemm_blocks.pack(w, b, args.lanes, tuple(map(int, spec.split("x"))))
            cases.append((name, x, w, b, y, packs, 2.0 * m * k * f))
    zero_res = np.zeros((1, 1), np.float32)
    lo, hi = np.float32(0), np.float32(6)
    with threadpool_limits(1):
        for name, x, w, b, y, packs, flops in cases:  # compile + check
            ref = np.clip(x.astype(np.float64) @ w + b, 0, 6)
            for pk in packs.values():
                gemm_blocks.product_epilogue(x, pk, y, None, lo, hi)
                assert np.abs(y - ref).max() < 1e-3 * max(1, np.abs(ref).max()), name
        results = {c[0]: {} for c in cases}
        for _ in range(args.rounds):
            for name, x, w, b, y, packs, flops in cases:
                calls = max(3, int(2e8 // flops))

                def blas():
                    np.matmul(x, w, out=y)
                    _epilogue_serial(y, b, zero_res, False, lo, hi)
                ways = {"blas+pass": blas}
                for spec, pk in packs.items():
                    ways[spec] = (lambda pk=pk: gemm_blocks.product_epilogue(x, pk, y, None, lo, hi))
                for way, call in ways.items():
                    results[name].setdefault(way, []).append(flops / best_of(call, calls) / 1e9)
    ways = list(next(iter(results.values())).keys())
    print("| shape | M | K | F | " + " | ".join(f"{w} GFLOP/s" for w in ways) + " | default / blas |")
    print("|---|---:|---:|---:|" + "---:|" * (len(ways) + 1))
    for name, x, w, b, y, packs, flops in cases:
        med = {way: statistics.median(v) for way, v in results[name].items()}
        print(f"| {name} | {x.shape[0]} | {x.shape[1]} | {w.shape[1]} | "
              + " | ".join(f"{med[w_]:.1f}" for w_ in ways) + f" | {med['default'] / med['blas+pass']:.2f}x |")
    print(machine.header())


if __name__ == "__main__":
    main()
