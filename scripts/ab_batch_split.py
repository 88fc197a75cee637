"""The groups-of-images inference route (tlkit/engine/batch_split.py) against the layer-by-layer
route, in one process, rounds interleaved (layers, groups, layers, ...), same model and input.

    python scripts/ab_batch_split.py                         # SqueezeNet, batch 32, 8 rounds
    python scripts/ab_batch_split.py --model squeezenet --batch 4 --rounds 6

Each timing: max(2, 64 // batch) predict_on_batch calls; the median img/s over the rounds is
printed per route with every round's figure, and the largest relative difference of the outputs.
"""
import argparse
import statistics
import sys
import time

import numpy as np

import machine
import peer_models


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("squeezenet", "vgg16"), default="squeezenet")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=8)
    args = p.parse_args()
    from tlkit.engine import batch_split

    load_before = machine.loadavg()
    model = peer_models.tlkit_model(args.model)
    model.trainable = False
    x = np.random.default_rng(0).standard_normal((args.batch, 224, 224, 3)).astype(np.float32)
    routes = {"layers": False, "groups": None}
    outputs = {}
    for name, enabled in routes.items():  # warm-up: compilation, each route's buffers
        batch_split.ENABLED = enabled
        outputs[name] = model.predict_on_batch(x).copy()
        model.predict_on_batch(x)
    diff = np.abs(outputs["groups"] - outputs["layers"]).max() / np.abs(outputs["layers"]).max()
    reps = max(2, 64 // args.batch)
    rates = {name: [] for name in routes}
    for _ in range(args.rounds):
        for name, enabled in routes.items():
            batch_split.ENABLED = enabled
            start = time.perf_counter()
            for _ in range(reps):
                model.predict_on_batch(x)
            rates[name].append(args.batch * reps / (time.perf_counter() - start))
    print(f"{machine.header(load_before=load_before)}; {args.model} batch {args.batch}, {args.rounds} interleaved "
          f"rounds of {reps} calls; outputs differ by {diff:.1e} (relative)")
    for name, r in rates.items():
        print(f"  {name:7s} median {statistics.median(r):7.1f} img/s  rounds {[round(v, 1) for v in r]}")
    print(f"  groups / layers: {statistics.median(rates['groups']) / statistics.median(rates['layers']):.2f}x")


if __name__ == "__main__":
    sys.exit(main())
