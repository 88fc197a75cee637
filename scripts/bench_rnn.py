"""LSTM(256) (or GRU(256): --cell gru) forward + backward, tlkit against torch.nn.LSTM (GRU): 100 steps,
batch 64, 128 inputs, the whole output sequence, gradients of the weights and of the input.

    python scripts/bench_rnn.py                 # 5 rounds; each round runs tlkit then torch
    python scripts/bench_rnn.py --rounds 9 --reps 7
    python scripts/bench_rnn.py --cell gru      # GRU (Keras 3 default reset_after=True, as torch's)

Each framework times its steps in its own fresh process (``--worker``), so neither one's threads or
caches touch the other's; the rounds interleave the two, so load from other processes hits both
alike. Prints each round's medians and ratio, then the median ratio (torch time / tlkit time: above
1 means tlkit is faster), the CPU model, numpy's sgemm GFLOP/s and the load average.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH, STEPS, N_IN, UNITS = 64, 100, 128, 256


def _data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((BATCH, STEPS, N_IN)).astype(np.float32),
            rng.standard_normal((BATCH, STEPS, UNITS)).astype(np.float32))


def tlkit_step(cell):
    sys.path.insert(0, str(ROOT))  # this checkout's tlkit, uninstalled
    import tlkit
    from tlkit import layers as L

    x, p = _data()
    layer = {"lstm": L.LSTM, "gru": L.GRU}[cell](UNITS, return_sequences=True)
    layer(x[:1])

    def step():
        with tlkit.GradientTape() as tape:
            tape.watch(x)
            loss = tlkit.ops.sum(layer(x, training=True) * p)
        return tape.gradient(loss, [x] + layer.trainable_weights)

    return step


def torch_step(cell):
    import torch

    x, p = (torch.from_numpy(a) for a in _data())
    x.requires_grad_()
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](N_IN, UNITS, batch_first=True)

    def step():
        rnn.zero_grad()
        x.grad = None
        out, _ = rnn(x)
        (out * p).sum().backward()

    return step


def worker(name, reps, cell):
    step = {"tlkit": tlkit_step, "torch": torch_step}[name](cell)
    step()
    step()  # warm-up: compilation, allocator, thread pools
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(json.dumps({"median": float(np.median(times))}))


def sgemm_gflops(n=1024, reps=5):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def run_worker(name, reps, cell):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, __file__, "--worker", name, "--reps", str(reps), "--cell", cell],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["median"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--worker", choices=["tlkit", "torch"])
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.reps, args.cell)
    print(f"{args.cell.upper()}({UNITS}) forward+backward, {STEPS} steps, batch {BATCH}, input {N_IN}")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); numpy sgemm: {sgemm_gflops():.0f} GFLOP/s; "
          f"load average at start: {os.getloadavg()[0]:.2f}")
    ratios = []
    for r in range(args.rounds):
        ours = run_worker("tlkit", args.reps, args.cell)
        theirs = run_worker("torch", args.reps, args.cell)
        ratios.append(theirs / ours)
        print(f"round {r + 1}: tlkit {ours * 1e3:7.1f} ms   torch {theirs * 1e3:7.1f} ms   torch/tlkit {ratios[-1]:.2f}x"
              f"   (load {os.getloadavg()[0]:.2f})", flush=True)
    print(f"median ratio torch/tlkit: {np.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}); "
          f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
