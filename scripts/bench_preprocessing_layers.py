"""Preprocessing-layer stack, tlkit against Keras 3: RandomFlip + RandomRotation + RandomZoom +
RandomContrast on a (64, 224, 224, 3) float32 batch with training=True.

Each framework runs in its own process pinned to the same single core (Keras in the peers' Python);
the two take rounds in turn (one timed batch each, warm processes), so load changes hit both alike.

    python scripts/bench_preprocessing_layers.py --rounds 5 [--cpu 0]
"""
import argparse
import json
import os
import subprocess
import sys
import time

from bench_augment import cpu_model  # scripts/ is on the path when this file runs

PEERS_PYTHON = "/work/peers/bin/python"
BATCH = (64, 224, 224, 3)


def build(framework):
    import numpy as np

    if framework == "keras":
        import keras
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        L = keras.layers
        model = keras.Sequential([keras.Input(BATCH[1:]), L.RandomFlip("horizontal"), L.RandomRotation(30 / 360),
                                  L.RandomZoom(0.2), L.RandomContrast(0.2)])
    else:
        import tlkit
        from tlkit import layers as L

        model = tlkit.Sequential([tlkit.Input(BATCH[1:]), L.RandomFlip("horizontal"), L.RandomRotation(30 / 360),
                                  L.RandomZoom(0.2), L.RandomContrast(0.2)])
    x = np.random.default_rng(0).uniform(0, 255, BATCH).astype(np.float32)
    return lambda: model(x, training=True)


def worker(framework):
    run = build(framework)
    run()  # compile / warm up
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        start = time.perf_counter()
        run()
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def start(framework, cpu):
    python = PEERS_PYTHON if framework == "keras" else sys.executable
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3",
               TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    if framework == "tlkit":
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(["taskset", "-c", str(cpu), python, os.path.abspath(__file__), "--worker", framework],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"{framework} worker did not start (is {python} there, with its framework?)")
    return proc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--worker", choices=["tlkit", "keras"])
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    print(f"CPU: {cpu_model()}; pinned to core {args.cpu}; load average before: {os.getloadavg()}")
    procs = {name: start(name, args.cpu) for name in ("tlkit", "keras")}
    times = {name: [] for name in procs}
    for r in range(args.rounds):
        for name, proc in procs.items():
            proc.stdin.write("go\n")
            proc.stdin.flush()
            times[name].append(json.loads(proc.stdout.readline())["seconds"])
        print(f"round {r + 1}: " + ", ".join(f"{n} {BATCH[0] / times[n][-1]:.0f} img/s" for n in times), flush=True)
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    best = {n: min(t) for n, t in times.items()}
    print(f"best of {args.rounds}: tlkit {BATCH[0] / best['tlkit']:.0f} img/s, keras {BATCH[0] / best['keras']:.0f} "
          f"img/s, ratio {best['keras'] / best['tlkit']:.2f}x; load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
