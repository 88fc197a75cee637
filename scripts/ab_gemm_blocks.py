"""Whole models with the register-blocked 1x1 products (gemm_blocks.ENABLED True, B) against BLAS + the
epilogue pass (False, A), in this one process, rounds interleaved (A, B, A, B, ...), frozen bases with
random weights, ``predict_on_batch``; also the largest difference between the two outputs.

    python scripts/ab_gemm_blocks.py         # SqueezeNet, MobileNetV2, EfficientNet-Lite0 at batch 32
    python scripts/ab_gemm_blocks.py --models mobilenet_v2 --batches 1 32 --rounds 6
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

BUILDERS = {"squeezenet": "SqueezeNet", "mobilenet_v2": "MobileNetV2", "efficientnet_lite0": "EfficientNetLite0",
            "resnet50": "ResNet50"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["squeezenet", "mobilenet_v2", "efficientnet_lite0"],
                   choices=list(BUILDERS))
    p.add_argument("--batches", nargs="+", type=int, default=[32])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=3, help="timed calls per round and way (median)")
    args = p.parse_args()
    from tlkit import zoo
    from tlkit.engine.kernels import gemm_blocks

    print(machine.header())
    print("| model | batch | BLAS + pass ms, median (min) | gemm_blocks ms, median (min) | speed-up "
          "| max |diff| / max |y| (B vs A) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.models:
        model = getattr(zoo, BUILDERS[name])(weights=None)
        model.trainable = False
        for batch in args.batches:
            x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
            outs, times = {}, {False: [], True: []}
            for way in (False, True):  # warm-up (compiles, packs)
                gemm_blocks.ENABLED = way
                outs[way] = np.array(model.predict_on_batch(x))  # a copy: outputs may be recycled buffers
                model.predict_on_batch(x)
            for _ in range(args.rounds):
                for way in (False, True):
                    gemm_blocks.ENABLED = way
                    calls = []
                    for _ in range(args.calls):
                        t = time.perf_counter()
                        model.predict_on_batch(x)
                        calls.append(time.perf_counter() - t)
                    times[way].append(statistics.median(calls) * 1e3)
            gemm_blocks.ENABLED = True
            a, b = statistics.median(times[False]), statistics.median(times[True])
            diff = float(np.abs(outs[True] - outs[False]).max() / max(np.abs(outs[False]).max(), 1e-30))
            print(f"| {name} | {batch} | {a:.1f} ({min(times[False]):.1f}) | {b:.1f} ({min(times[True]):.1f}) | "
                  f"{a / b:.2f}x | {diff:.1e} |", flush=True)
    print(machine.header())


if __name__ == "__main__":
    main()
