"""Compiled steps (tlkit/engine/compiled_steps.py) against the plan's per-node route, in one process,
rounds interleaved (per node, compiled, compiled, per node, ...), same model and input.

    python scripts/ab_compiled_steps.py                                   # SqueezeNet b32 and b1, MobileNetV2 b1
    python scripts/ab_compiled_steps.py --cases squeezenet-32 --rounds 8

Each round switches the route and makes 2 untimed calls (a program compiles at the second call on
new shapes), then times enough predict_on_batch calls for ~64 images (2 to 32 calls); the median
img/s over the rounds is printed per route with every round's figure, and the largest relative
difference of the outputs. The bases are frozen with random weights, as bench.py's.
"""
import argparse
import statistics
import sys
import time

import machine
import numpy as np

CASES = {"squeezenet-32": ("SqueezeNet", 32), "squeezenet-1": ("SqueezeNet", 1),
         "mobilenet_v2-1": ("MobileNetV2", 1), "resnet50-1": ("ResNet50", 1), "vgg16-1": ("VGG16", 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["squeezenet-32", "squeezenet-1",
                                                                          "mobilenet_v2-1"])
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    from tlkit import zoo
    from tlkit.engine import compiled_steps

    load_before = machine.loadavg()
    results = []
    for case in args.cases:
        arch, batch = CASES[case]
        model = getattr(zoo, arch)(weights=None, include_top=False, input_shape=(224, 224, 3))
        model.trainable = False
        x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
        routes = {"per node": False, "compiled": True}
        outputs = {}
        for name, enabled in routes.items():  # warm-up: numba's compilation, each route's buffers
            compiled_steps.ENABLED = enabled
            for _ in range(3):
                outputs[name] = model.predict_on_batch(x).copy()
        diff = np.abs(outputs["compiled"] - outputs["per node"]).max() / np.abs(outputs["per node"]).max()
        reps = min(32, max(2, 64 // batch))
        rates = {name: [] for name in routes}
        for r in range(args.rounds):
            for name in (routes if r % 2 == 0 else reversed(list(routes))):
                compiled_steps.ENABLED = routes[name]
                for _ in range(2):
                    model.predict_on_batch(x)
                start = time.perf_counter()
                for _ in range(reps):
                    model.predict_on_batch(x)
                rates[name].append(batch * reps / (time.perf_counter() - start))
        compiled_steps.ENABLED = True
        results.append((case, reps, diff, rates))
    print(f"{machine.header(load_before=load_before)}; {args.rounds} interleaved rounds")
    for case, reps, diff, rates in results:
        print(f"{case}: rounds of {reps} calls; outputs differ by {diff:.1e} (relative)")
        for name, r in rates.items():
            print(f"  {name:9s} median {statistics.median(r):7.1f} img/s  rounds {[round(v, 1) for v in r]}")
        ratios = [c / n for c, n in zip(rates["compiled"], rates["per node"])]
        print(f"  compiled / per node: {statistics.median(rates['compiled']) / statistics.median(rates['per node']):.3f}x"
              f" (rounds {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    sys.exit(main())
