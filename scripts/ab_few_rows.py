"""The few-output-pixel routes (batch-1 deep layers) on and off in one process, rounds interleaved:
products split by output channels (conv_chunks.by_columns) and 3x3 convs of under
winograd.FEW_TILES tiles through im2col, against the routes before them (row tiles, Winograd).

    python scripts/ab_few_rows.py --models resnet50 mobilenet_v2 --batch 1 --rounds 6 --calls 15
    python scripts/ab_few_rows.py --models squeezenet --batch 32 --rounds 6 --calls 5

Each round times --calls predict_on_batch calls per route (median); printed: the median over the
rounds per route with every round's figure, and the largest relative difference of the outputs.
"""
import argparse
import statistics
import sys
import time

import numpy as np

import machine
from profile_backbones import REPO, build

sys.path.insert(0, REPO)  # this checkout's tlkit


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet50"],
                   choices=("efficientnet_lite0", "mobilenet_v2", "resnet50", "squeezenet"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--calls", type=int, default=15)
    args = p.parse_args()
    from tlkit.engine.kernels import conv_chunks, winograd

    routes = {"before": (0, False), "few-rows routes": (winograd.FEW_TILES, None)}

    def use(route):
        winograd.FEW_TILES, conv_chunks.COLUMNS = routes[route]

    load_before = machine.loadavg()
    x = np.random.default_rng(0).standard_normal((args.batch, 224, 224, 3)).astype(np.float32)
    lines = []
    for name in args.models:
        model = build(name)
        outputs = {}
        for route in routes:  # warm-up: compilation, each route's buffers and cached filters
            use(route)
            outputs[route] = model.predict_on_batch(x).copy()
            model.predict_on_batch(x)
        a, b = outputs.values()
        diff = np.abs(a - b).max() / np.abs(a).max()
        times = {route: [] for route in routes}
        for _ in range(args.rounds):
            for route in routes:
                use(route)
                calls = []
                for _ in range(args.calls):
                    start = time.perf_counter()
                    model.predict_on_batch(x)
                    calls.append(time.perf_counter() - start)
                times[route].append(statistics.median(calls))
        use("few-rows routes")
        lines.append(f"{name} batch {args.batch} (outputs differ by {diff:.1e}, relative):")
        for route, t in times.items():
            lines.append(f"  {route:16s} median {statistics.median(t) * 1e3:8.2f} ms  rounds "
                         f"{[round(v * 1e3, 2) for v in t]}")
    print(f"{machine.header(load_before=load_before)}; {args.rounds} interleaved rounds of {args.calls} calls")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
