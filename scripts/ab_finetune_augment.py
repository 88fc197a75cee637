"""A/B: `tlkit finetune`'s training augmentation, Keras 2's generator (A) against Keras 3's
preprocessing layers (B, what finetune uses now), on the same flags, in interleaved rounds.

    python scripts/ab_finetune_augment.py                # ~2 min
    python scripts/ab_finetune_augment.py --rounds 7 --cpu 1

Two measures per preset: ``transform_batch`` on a fixed 32x224x224x3 uint8 batch pinned to one
core (the augmentation alone, serial; CPU seconds, best of ``--reps`` per round), and the training iterator over hymenoptera's train folder with 2
workers (decode + resize + augment + batch, as finetune streams stage 2). Presets: flips only
(finetune's default) and flips + rotation 15 + shift 0.1 + zoom 0.1. Ratios are B / A per round.
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = pathlib.Path(os.environ.get("TLKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
FOLDER = DATA / "datasets" / "hymenoptera_data" / "train"
PRESETS = {"flips (default)": dict(flip="horizontal"),
           "flips, rotation 15, shift 0.1, zoom 0.1": dict(flip="horizontal", rotation=15, shift=0.1, zoom=0.1)}


def augmenters(flags):
    from tlkit.augment import ImageDataGenerator
    from tlkit.augment.layers.augmenter import LayerAugmenter
    from tlkit.augment.options import generator_arguments

    arguments = generator_arguments(**flags)
    return {"A generator": ImageDataGenerator(**arguments), "B layers": LayerAugmenter.from_flags(arguments)}


def batch_rate(augmenter, batch, reps):
    augmenter.transform_batch(batch, np.random.RandomState(0))
    best = float("inf")
    for rep in range(reps):  # the same draws for A and B: seeds 1..reps
        t = time.process_time()  # CPU time: serial code, so other processes' load barely moves it
        augmenter.transform_batch(batch, np.random.RandomState(1 + rep))
        best = min(best, time.process_time() - t)
    return len(batch) / best


def stream_rate(augmenter):
    it = augmenter.flow_from_directory(FOLDER, target_size=(224, 224), batch_size=32, seed=0, workers=2, verbose=0)
    try:
        next(it)
        t, n = time.perf_counter(), 0
        for _ in range(len(it)):
            n += len(next(it)[0])
        return n / (time.perf_counter() - t)
    finally:
        it.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--cpu", type=int, default=0, help="the core the one-core measure is pinned to")
    args = p.parse_args()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    batch = np.random.default_rng(0).integers(0, 256, (32, 224, 224, 3)).astype(np.uint8)
    everything = set(os.sched_getaffinity(0))
    for name, flags in PRESETS.items():
        pair = augmenters(flags)
        ratios = {"one core, transform_batch": [], "iterator, 2 workers": []}
        for r in range(args.rounds):
            order = list(pair.items())[::1 if r % 2 else -1]  # A first in every other round
            os.sched_setaffinity(0, {args.cpu})
            rates = {k: batch_rate(a, batch, args.reps) for k, a in order}
            ratios["one core, transform_batch"].append((rates["B layers"] / rates["A generator"], rates))
            os.sched_setaffinity(0, everything)
            if FOLDER.is_dir():
                rates = {k: stream_rate(a) for k, a in order}
                ratios["iterator, 2 workers"].append((rates["B layers"] / rates["A generator"], rates))
        for measure, rounds in ratios.items():
            if rounds:
                r = [x for x, _ in rounds]
                a = statistics.median(x["A generator"] for _, x in rounds)
                b = statistics.median(x["B layers"] for _, x in rounds)
                print(f"{name} | {measure}: A {a:.0f} img/s, B {b:.0f} img/s, B/A median {statistics.median(r):.2f} "
                      f"(rounds {min(r):.2f}-{max(r):.2f})", flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
