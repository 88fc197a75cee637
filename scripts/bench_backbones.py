"""Forward speed of the new zoo bases: tlkit vs ONNX Runtime on the same network exported from torch.

    python scripts/bench_backbones.py --rounds 3            # all three bases, batch 32 and 1
    python scripts/bench_backbones.py --models efficientnet_lite0 --batches 1
    # needs torch + efficientnet-lite-pytorch here, onnxruntime (+ torch, onnx) in --peers-python

The torch module (scripts/peer_backbones.py: EfficientNet-Lite0's reference module with the real
weights; MobileNetV2 and ResNet50 rebuilt layer for layer with random weights) is traced here
(TorchScript), exported to ONNX in the peers' Python, and each measurement (base x engine x batch
size) runs in its own process, interleaved over rounds so that load from other processes hits both
engines alike. tlkit runs the base frozen (``trainable = False``, as a transfer-learning base), so
its BatchNormalizations stay folded between calls as ONNX Runtime's are. Each process warms up
once, then times ``--repeats`` forward passes; the median is reported with the CPU and the load, and
each engine's peak resident memory (the most any of its processes reached: issue 16's memory bar).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # this checkout's tlkit, not an installed one
SCRIPTS = os.path.join(REPO, "scripts")
sys.path.insert(0, SCRIPTS)

import machine  # noqa: E402
EXPORT = r'''
import sys, torch
m = torch.jit.load(sys.argv[1])
torch.onnx.export(m, torch.zeros(1, 3, 224, 224), sys.argv[2], dynamo=False, input_names=["x"], output_names=["y"],
                  dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17)
'''
ORT_WORKER = r'''
import json, sys, time, numpy as np, onnxruntime as ort
path, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, sys.argv[4])
import machine
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
session.run(None, {"x": x})
times = []
for _ in range(repeats):
    t = time.perf_counter(); session.run(None, {"x": x}); times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "peak_mb": machine.peak_rss_mb()}))
'''


MODELS = ("efficientnet_lite0", "mobilenet_v2", "resnet50")


def tlkit_worker(model_name, batch, repeats):
    import numpy as np

    from tlkit import zoo

    if model_name == "efficientnet_lite0":
        model = zoo.EfficientNetLite0(weights="imagenet")
    else:
        model = {"mobilenet_v2": zoo.MobileNetV2, "resnet50": zoo.ResNet50}[model_name](weights=None)
    model.trainable = False
    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    model.predict_on_batch(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - t)
    print(json.dumps({"times": times, "peak_mb": machine.peak_rss_mb()}))


def export_onnx(model_name, folder, peers_python):
    import torch

    from peer_backbones import torch_backbone

    traced = os.path.join(folder, f"{model_name}.pt")
    torch.jit.trace(torch_backbone(model_name), torch.zeros(1, 3, 224, 224)).save(traced)
    onnx_path = os.path.join(folder, f"{model_name}.onnx")
    subprocess.run([peers_python, "-c", EXPORT, traced, onnx_path], check=True, capture_output=True)
    return onnx_path


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peers-python", default=os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python"))
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return tlkit_worker(args.worker, args.batch, args.repeats)
    env = dict(os.environ, PYTHONPATH=REPO)
    results, peaks, load_before = {}, {}, os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        onnx_paths = {m: export_onnx(m, folder, args.peers_python) for m in args.models}
        for r in range(args.rounds):
            for model_name in args.models:
                for batch in args.batches:
                    for engine in ("tlkit", "onnxruntime"):
                        if engine == "tlkit":
                            cmd = [sys.executable, __file__, "--worker", model_name, "--batch", str(batch),
                                   "--repeats", str(args.repeats)]
                        else:
                            cmd = [args.peers_python, "-c", ORT_WORKER, onnx_paths[model_name], str(batch),
                                   str(args.repeats), SCRIPTS]
                        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
                        key = (model_name, engine, batch)
                        got = json.loads(out.strip().splitlines()[-1])
                        results.setdefault(key, []).extend(got["times"])
                        peaks[key] = max(peaks.get(key, 0), got["peak_mb"])
                        print(f"round {r + 1}/{args.rounds} {model_name} batch {batch} {engine}: "
                              f"{statistics.median(results[key]) * 1000:.1f} ms (median so far)", flush=True)
    load = " ".join(f"{v:.2f}" for v in load_before), " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nForward, 224x224, CPU: {cpu_name()} ({os.cpu_count()} logical cores); load average before "
          f"{load[0]}, after {load[1]}; median of {args.rounds} round(s) x {args.repeats} calls; peak MB: each "
          "process's peak resident set (VmHWM), as scripts/bench.py")
    print("| base | batch | tlkit ms | ONNX Runtime ms | tlkit speed vs ORT | tlkit peak MB | ONNX Runtime peak MB |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for model_name in args.models:
        for batch in args.batches:
            ours, theirs = (statistics.median(results[(model_name, e, batch)]) * 1000
                            for e in ("tlkit", "onnxruntime"))
            print(f"| {model_name} | {batch} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.2f}x "
                  f"| {peaks[(model_name, 'tlkit', batch)]:.0f} | {peaks[(model_name, 'onnxruntime', batch)]:.0f} |")


if __name__ == "__main__":
    main()
