"""Conv1D and DepthwiseConv2D forward: tlkit against PyTorch's CPU convolutions, each in its own process,
in interleaved rounds (issue 18's speed bars).

    python scripts/bench_layers.py                 # the default cases, 5 rounds
    python scripts/bench_layers.py --rounds 9 --runs 20
    python scripts/bench_layers.py --only "text k5" --only "dw 5x5"   # the cases whose names contain these

Every round starts one tlkit process and one torch process per case, one after the other, so load
from other processes hits both alike; the report gives each side's median time per call over the
rounds and the ratio (torch time / tlkit time: > 1 means tlkit is faster). The CPU model, the load
average and numpy's sgemm GFLOP/s are printed first, to read the figures against the machine.
Same 'valid'/'causal' geometry on both sides; channels-last input for tlkit, channels-first for torch
(each framework's native layout), float32. DepthwiseConv2D: 'same' padding, tlkit NHWC against torch's
grouped conv2d with input and weight in channels_last memory under inference_mode (its fastest CPU
path), MobileNet-sized layers.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (name, batch, steps, in channels, filters, kernel, dilation, padding)
CASES = [
    ("wavenet-ish k2 d4 causal", 32, 1000, 64, 64, 2, 4, "causal"),
    ("text k5", 64, 200, 128, 128, 5, 1, "valid"),
    ("time series k3", 128, 500, 32, 64, 3, 1, "causal"),
    ("wide k7", 16, 2000, 16, 32, 7, 1, "valid"),
]
# (name, batch, height = width, channels, kernel, stride): MobileNetV2 / EfficientNet-Lite0 layers
DEPTHWISE_CASES = [
    ("dw 3x3 112x112x32 s1", 32, 112, 32, 3, 1),
    ("dw 3x3 56x56x144 s2", 32, 56, 144, 3, 2),
    ("dw 3x3 14x14x576 s1", 32, 14, 576, 3, 1),
    ("dw 5x5 28x28x240 s1", 32, 28, 240, 5, 1),
]


def depthwise_step(framework, case):
    _, n, hw, c, k, stride = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
    w = rng.standard_normal((k, k, c, 1)).astype(np.float32)
    if framework == "tlkit":
        sys.path.insert(0, str(ROOT))
        from tlkit import layers as L
        layer = L.DepthwiseConv2D(k, strides=stride, padding="same")
        layer(x[:1])
        layer.set_weights([w, np.zeros(c, np.float32)])
        layer.trainable = False
        return lambda: layer(x)
    import torch
    import torch.nn.functional as F
    xt = torch.tensor(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    # The weight in channels_last too: with a contiguous weight torch 2.13 left its channels_last
    # depthwise kernel for the stride-2 case (25 ms instead of 3.4 ms on 56x56x144), and F.pad's
    # output is NCHW-contiguous (the same slow path). Where the symmetric padding k // 2 gives TF's
    # output size (every case here), torch runs it: the same work as 'same' with no padded copy.
    wt = torch.tensor(w[:, :, :, 0]).permute(2, 0, 1).unsqueeze(1).contiguous(memory_format=torch.channels_last)
    bt = torch.zeros(c)
    symmetric = (hw + 2 * (k // 2) - k) // stride + 1 == -(-hw // stride)

    def step():
        with torch.inference_mode():
            if symmetric:
                return F.conv2d(xt, wt, bt, stride=stride, padding=k // 2, groups=c)
            padded = F.pad(xt, _same_pad(hw, k, stride)).contiguous(memory_format=torch.channels_last)
            return F.conv2d(padded, wt, bt, stride=stride, groups=c)
    return step


def _same_pad(size, k, stride):
    """Keras/TensorFlow 'same' padding for a stride: the extra pixel goes right and bottom."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return (total // 2, total - total // 2, total // 2, total - total // 2)


def worker(framework, case, runs):
    """Median seconds per forward call of one case, in this process."""
    if case in DEPTHWISE_CASES:
        return timed(depthwise_step(framework, case), runs)
    _, n, steps, cin, f, k, d, padding = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, steps, cin)).astype(np.float32)
    w = rng.standard_normal((k, cin, f)).astype(np.float32)
    if framework == "tlkit":
        sys.path.insert(0, str(ROOT))
        from tlkit import layers as L
        layer = L.Conv1D(f, k, dilation_rate=d, padding=padding)
        layer(x[:1])
        layer.kernel.assign(w)
        step = lambda: layer(x)  # noqa: E731
    else:
        import torch
        import torch.nn.functional as F
        xt = torch.tensor(x).permute(0, 2, 1).contiguous()
        wt = torch.tensor(w).permute(2, 1, 0).contiguous()
        bt = torch.zeros(f)
        left = (k - 1) * d if padding == "causal" else 0

        def step():
            with torch.no_grad():
                return F.conv1d(F.pad(xt, (left, 0)) if left else xt, wt, bt, dilation=d)
    return timed(step, runs)


def timed(step, runs):
    for _ in range(3):
        step()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(framework, index, runs):
    cmd = [sys.executable, __file__, "--worker", framework, str(index), str(runs)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{framework} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 "unknown CPU")
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    a @ a
    t = time.perf_counter()
    for _ in range(5):
        a @ a
    gflops = 5 * 2 * 1024 ** 3 / (time.perf_counter() - t) / 1e9
    return model, gflops, os.getloadavg()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (processes per side per case)")
    parser.add_argument("--runs", type=int, default=10, help="timed calls per process")
    parser.add_argument("--only", action="append", default=[], help="run only the cases whose name contains this "
                        "text (repeatable)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        framework, index, runs = args.worker
        print(json.dumps(worker(framework, (CASES + DEPTHWISE_CASES)[int(index)], int(runs))))
        return
    model, gflops, load = machine()
    print(f"CPU: {model}; {os.cpu_count()} logical cores; numpy sgemm 1024^3: {gflops:.1f} GFLOP/s; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'forward':<28} {'tlkit ms':>9} {'torch ms':>9} {'torch/tlkit':>11}")
    for i, case in enumerate(CASES + DEPTHWISE_CASES):
        if args.only and not any(text in case[0] for text in args.only):
            continue
        ours, theirs = [], []
        for r in range(args.rounds):
            print(f"  {case[0]}: round {r + 1}/{args.rounds}", end="\r", file=sys.stderr, flush=True)
            ours.append(measure("tlkit", i, args.runs))
            theirs.append(measure("torch", i, args.runs))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{case[0]:<28} {a * 1e3:9.2f} {b * 1e3:9.2f} {b / a:10.2f}x")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
