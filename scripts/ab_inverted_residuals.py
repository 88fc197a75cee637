"""Inverted-residual blocks fused over bands of rows (tlkit/engine/inverted_residuals.py) against the
same blocks run layer by layer, in one process, rounds interleaved (layers, fused, layers, ...), same
model and input.

    python scripts/ab_inverted_residuals.py                                  # both bases, batch 32, 4 rounds
    python scripts/ab_inverted_residuals.py --models mobilenet_v2 --batch 1 --rounds 8

Each timing: max(3, 96 // batch) predict_on_batch calls; per route, the median and the minimum
milliseconds a call over all calls, and the largest relative difference of the outputs.
MobileNetV2 has random weights (weights=None), EfficientNet-Lite0 its ImageNet weights when installed.
"""
import argparse
import statistics
import time

import numpy as np

import machine


def build(name):
    from tlkit import zoo

    if name == "efficientnet_lite0":
        try:
            return zoo.EfficientNetLite0(weights="imagenet")
        except Exception:  # noqa: BLE001 - the weights package is optional: random weights time the same
            return zoo.EfficientNetLite0(weights=None)
    return zoo.MobileNetV2(weights=None)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=("mobilenet_v2", "efficientnet_lite0"),
                   default=["mobilenet_v2", "efficientnet_lite0"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    from tlkit.engine import inverted_residuals

    print(f"CPU: {machine.cpu_model()}; load average before: {machine.loadavg()}")
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch, 224, 224, 3)).astype(np.float32)
    reps = max(3, 96 // args.batch)
    for name in args.models:
        model = build(name)
        model.trainable = False
        outputs = {}
        for fused in (False, True):  # warm-up: compilation, each route's buffers
            inverted_residuals.ENABLED = fused
            outputs[fused] = model.predict_on_batch(x).copy()
            model.predict_on_batch(x)
        diff = np.abs(outputs[True] - outputs[False]).max() / np.abs(outputs[False]).max()
        times = {False: [], True: []}
        for _ in range(args.rounds):
            for fused in (False, True):
                inverted_residuals.ENABLED = fused
                for _ in range(reps):
                    t = time.perf_counter()
                    model.predict_on_batch(x)
                    times[fused].append((time.perf_counter() - t) * 1e3)
        inverted_residuals.ENABLED = True
        layers, fused = statistics.median(times[False]), statistics.median(times[True])
        print(f"{name} batch {args.batch}: layer by layer {layers:.1f} ms (min {min(times[False]):.1f}), "
              f"fused {fused:.1f} ms (min {min(times[True]):.1f}): {layers / fused:.2f}x; "
              f"outputs differ by {diff:.1e} (relative)", flush=True)
    print(f"load average after: {machine.loadavg()}")


if __name__ == "__main__":
    main()
