"""Forward speed of EfficientNet-Lite0: tlkit vs ONNX Runtime on the same network exported from torch.

    python scripts/bench_backbones.py --rounds 3            # needs torch + efficientnet-lite-pytorch here,
                                                            # onnxruntime (+ torch, onnx) in --peers-python

The reference PyTorch module with the real weights is traced here (TorchScript), exported to ONNX in
the peers' Python, and each measurement (engine x batch size) runs in its own process, interleaved
over rounds so that load from other processes hits both engines alike. Each process warms up once,
then times ``--repeats`` forward passes; the median is reported, with the CPU's name.
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
EXPORT = r'''
import sys, torch
m = torch.jit.load(sys.argv[1])
torch.onnx.export(m, torch.zeros(1, 3, 224, 224), sys.argv[2], dynamo=False, input_names=["x"], output_names=["y"],
                  dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17)
'''
ORT_WORKER = r'''
import json, sys, time, numpy as np, onnxruntime as ort
path, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
session.run(None, {"x": x})
times = []
for _ in range(repeats):
    t = time.perf_counter(); session.run(None, {"x": x}); times.append(time.perf_counter() - t)
print(json.dumps(times))
'''


def tlkit_worker(batch, repeats):
    import numpy as np

    from tlkit.zoo import EfficientNetLite0

    model = EfficientNetLite0(weights="imagenet")
    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    model.predict_on_batch(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - t)
    print(json.dumps(times))


def export_onnx(folder, peers_python):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from tlkit.zoo.efficientnet_lite0 import imagenet_weights_path

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(imagenet_weights_path(), weights_only=True))
    net.eval()
    traced = os.path.join(folder, "lite0.pt")
    torch.jit.trace(net, torch.zeros(1, 3, 224, 224)).save(traced)
    onnx_path = os.path.join(folder, "lite0.onnx")
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peers-python", default=os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python"))
    parser.add_argument("--worker", choices=["tlkit"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return tlkit_worker(args.batch, args.repeats)
    env = dict(os.environ, PYTHONPATH=REPO)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = export_onnx(folder, args.peers_python)
        for r in range(args.rounds):
            for batch in (32, 1):
                for engine in ("tlkit", "onnxruntime"):
                    if engine == "tlkit":
                        cmd = [sys.executable, __file__, "--worker", "tlkit", "--batch", str(batch),
                               "--repeats", str(args.repeats)]
                    else:
                        cmd = [args.peers_python, "-c", ORT_WORKER, onnx_path, str(batch), str(args.repeats)]
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
                    results.setdefault((engine, batch), []).extend(json.loads(out.strip().splitlines()[-1]))
                    print(f"round {r + 1}/{args.rounds} batch {batch} {engine}: "
                          f"{statistics.median(results[(engine, batch)]) * 1000:.1f} ms (median so far)", flush=True)
    print(f"\nEfficientNet-Lite0 forward, 224x224, CPU: {cpu_name()} ({os.cpu_count()} logical cores)")
    print("| batch | tlkit ms | ONNX Runtime ms | tlkit speed vs ORT |\n|---:|---:|---:|---:|")
    for batch in (32, 1):
        ours, theirs = (statistics.median(results[(e, batch)]) * 1000 for e in ("tlkit", "onnxruntime"))
        print(f"| {batch} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.2f}x |")


if __name__ == "__main__":
    main()
