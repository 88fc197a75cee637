"""Where a zoo base's forward time goes, by kind of step, as the model really runs it (the inference
plan's fused steps: conv + folded BN + residual Add + ReLU6 count as one step of the conv's kind).

    python scripts/profile_backbones.py --models efficientnet_lite0 mobilenet_v2 --batches 32 1
    python scripts/profile_backbones.py --models resnet50 --batches 1 --layers   # also every step
    python scripts/profile_backbones.py --models squeezenet --batches 1 --one-thread   # and on one thread
    python scripts/profile_backbones.py --models resnet50 --batches 1 --onnxruntime 1   # + ORT's nodes, 1 thread

Each step of ``inference_plan.Execution.compute`` is timed (perf_counter around the call) over
--runs forward passes after a warm-up; the table sums the best run's steps by kind, with GFLOP/s
for the convolutions. "outside the steps" is the forward's time minus the steps' sum: the graph
walk, buffer bookkeeping and releases (Python per layer).

--onnxruntime T...: ONNX Runtime's own profiler (``SessionOptions.enable_profiling``, peers' Python) on
the model bench_backbones.py exports, with T intra-op threads, its node times summed by the same kinds
(a conv's kind from its weight's shape; ORT's fused Conv+Add+Relu counts as one conv).
"""
import argparse
import collections
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_PYTHON = os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python")
sys.path.insert(0, REPO)  # this checkout's tlkit, not an installed one


def build(model_name):
    from tlkit import zoo

    if model_name == "efficientnet_lite0":
        try:
            model = zoo.EfficientNetLite0(weights="imagenet")
        except Exception:  # the weights package is optional: the timing does not depend on the values
            model = zoo.EfficientNetLite0(weights=None)
    elif model_name == "squeezenet":  # the base bench.py times (with its classifier convs)
        model = zoo.SqueezeNet(weights=None, input_shape=(224, 224, 3))
    else:
        model = {"mobilenet_v2": zoo.MobileNetV2, "resnet50": zoo.ResNet50}[model_name](weights=None)
    model.trainable = False
    return model


def step_kind(node, plan, x_shape):
    """(kind name, FLOPs) of one computed step."""
    block = getattr(plan, "blocks", {}).get(id(node))
    if block is not None:  # an inverted-residual block run as one step (engine/inverted_residuals.py)
        parts = [p for p in (block.expand, block.depthwise, block.project) if p is not None]
        flops, shape = 0, x_shape
        for conv, _, _ in parts:
            if block.padder is not None and conv is block.depthwise[0]:
                shape = block.padder.layer.compute_output_shape(shape)
            flops += step_kind(conv, {}, shape)[1]
            shape = conv.layer.compute_output_shape(shape)
        kh, kw = block.depthwise[0].layer.kernel_size
        expand = "expand+" if block.expand is not None else ""
        return f"block {expand}dw {kh}x{kw}/{block.depthwise[0].layer.strides[0]}+project", flops
    layer = node.layer
    name = type(layer).__name__
    chain = [k for k, _, _ in getattr(plan, "epilogues", {}).get(id(node), ())]
    fused = getattr(plan, "fused", {}).get(id(node), (None, None))[1]
    suffix = ("+bn" if fused == "batch_norm" else f"+{fused}" if fused else "") + "".join(f"+{k}" for k in chain)
    flops = 0
    if name in ("Conv2D", "DepthwiseConv2D"):
        out = layer.compute_output_shape(x_shape)
        kh, kw = layer.kernel_size
        if name == "Conv2D":
            flops = 2 * out[0] * out[1] * out[2] * out[3] * kh * kw * x_shape[-1] // layer.groups
            shape = "1x1" if (kh, kw) == (1, 1) else f"{kh}x{kw}"
            name = f"Conv2D {shape}/{layer.strides[0]}" + (" (stem)" if x_shape[-1] == 3 else "")
        else:
            flops = 2 * out[0] * out[1] * out[2] * out[3] * kh * kw
            name = f"DepthwiseConv2D {kh}x{kw}/{layer.strides[0]}"
    return name + suffix, flops


def profile(model_name, batch, runs, per_layer):
    import numpy as np

    from tlkit.engine import compiled_steps, inference_plan

    model = build(model_name)
    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    steps = []
    original, compile_node = inference_plan.Execution.compute, compiled_steps._compile_node

    def timed(self, node):
        if id(node) in self.done:
            return
        shape = tuple(self.values[id(node.inputs[0])].shape)
        t = time.perf_counter()
        original(self, node)
        steps.append((node, shape, time.perf_counter() - t))

    def timed_compile_node(run, node, index, vals, dynamic):  # the compiled steps the forward replays
        shape = tuple(run.values[id(node.inputs[0])].shape) if id(node.inputs[0]) in run.values else None
        step = compile_node(run, node, index, vals, dynamic)
        if step is compiled_steps._NOTHING:
            return step

        def timed_step(vals):
            t = time.perf_counter()
            step(vals)
            steps.append((node, shape, time.perf_counter() - t))
        return timed_step

    inference_plan.Execution.compute = timed
    compiled_steps._compile_node = timed_compile_node
    model._graph._programs.clear()  # compiled again with the timed steps
    best = None
    try:
        for _ in range(2):  # the first call runs through an Execution, the second compiles the steps
            model.predict_on_batch(x)
        for _ in range(runs):
            steps.clear()
            t = time.perf_counter()
            model.predict_on_batch(x)
            total = time.perf_counter() - t
            if best is None or total < best[0]:
                best = (total, list(steps))
    finally:
        inference_plan.Execution.compute, compiled_steps._compile_node = original, compile_node
        model._graph._programs.clear()
    total, steps = best
    plan = model._graph.plan
    by_kind = collections.defaultdict(lambda: [0, 0.0, 0])
    rows = []
    for node, shape, seconds in steps:
        kind, flops = step_kind(node, plan, shape)
        k = by_kind[kind]
        k[0] += 1
        k[1] += seconds
        k[2] += flops
        rows.append((node.layer.name, kind, shape, seconds, flops))
    inside = sum(s for _, _, s in steps)
    print(f"\n### {model_name}, batch {batch}: forward {total * 1e3:.1f} ms (best of {runs}), "
          f"{len(steps)} steps\n")
    print("| step kind | steps | ms | share | GFLOP/s |\n|---|---:|---:|---:|---:|")
    for kind, (n, seconds, flops) in sorted(by_kind.items(), key=lambda kv: -kv[1][1]):
        rate = f"{flops / seconds / 1e9:.1f}" if flops else ""
        print(f"| {kind} | {n} | {seconds * 1e3:.1f} | {seconds / total:.0%} | {rate} |")
    print(f"| outside the steps (graph walk, buffers) | - | {(total - inside) * 1e3:.1f} | "
          f"{(total - inside) / total:.0%} | |")
    if per_layer:
        print("\n| layer | kind | input | ms | GFLOP/s |\n|---|---|---|---:|---:|")
        for name, kind, shape, seconds, flops in rows:
            rate = f"{flops / seconds / 1e9:.1f}" if flops else ""
            print(f"| {name} | {kind} | {shape} | {seconds * 1e3:.2f} | {rate} |")


ORT_PROFILE = r'''
import collections, json, sys, numpy as np, onnxruntime as ort
path, batch, threads, runs, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
o = ort.SessionOptions()
o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
for _ in range(3):
    s.run(None, {"x": x})
o.enable_profiling, o.profile_file_prefix = True, prefix
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
s.run(None, {"x": x})
totals = []
for _ in range(runs):
    t = __import__("time").perf_counter(); s.run(None, {"x": x}); totals.append(__import__("time").perf_counter() - t)
nodes = collections.defaultdict(list)
for e in json.load(open(s.end_profiling())):
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        a = e["args"]
        shapes = [list(d.values())[0] for d in a.get("input_type_shape", [])]
        nodes[e["name"][:-12]].append((a.get("op_name"), shapes, e["dur"] / 1e3))
out = [(n, v[0][0], v[0][1], min(d for _, _, d in v[1:] or v)) for n, v in nodes.items()]
print(json.dumps({"total_ms": min(totals) * 1e3, "nodes": out}))
'''


def ort_kind(op, shapes):
    """A kind name like step_kind's for one ORT node (op name, input shapes; NCHW or NCHWc)."""
    if op in ("Conv", "FusedConv") and len(shapes) >= 2 and len(shapes[1]) == 4:
        x, w = shapes[0], shapes[1]
        cout, cin_g, kh, kw = w
        cin = x[1] * (x[4] if len(x) == 5 else 1)
        if cin_g == 1 and cin > 1:
            return f"DepthwiseConv2D {kh}x{kw}"
        return "Conv2D " + ("1x1" if (kh, kw) == (1, 1) else f"{kh}x{kw}") + (" (stem)" if cin <= 4 else "")
    return op


def ort_profile(model_name, batch, thread_counts, runs, per_node):
    """ONNX Runtime's per-node profile of the exported base, summed by kind, for each thread count."""
    import tempfile

    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import json
    import subprocess

    import bench_backbones
    import machine

    with tempfile.TemporaryDirectory() as folder:
        path = bench_backbones.export_onnx(model_name, folder, PEER_PYTHON)
        for threads in thread_counts:
            done = subprocess.run([PEER_PYTHON, "-c", ORT_PROFILE, path, str(batch), str(threads), str(runs),
                                   os.path.join(folder, f"p{threads}")], capture_output=True, text=True,
                                  env=machine.peer_env(), check=False)
            if done.returncode != 0:
                raise SystemExit(f"ONNX Runtime profile failed:\n{done.stderr[-2000:]}")
            got = json.loads(done.stdout.strip().splitlines()[-1])
            by_kind = collections.defaultdict(lambda: [0, 0.0])
            for _, op, shapes, ms in got["nodes"]:
                k = by_kind[ort_kind(op, shapes)]
                k[0] += 1
                k[1] += ms
            inside = sum(ms for _, _, _, ms in got["nodes"])
            print(f"\n### ONNX Runtime, {model_name}, batch {batch}, {threads} intra-op thread(s): run "
                  f"{got['total_ms']:.1f} ms (best of {runs}), nodes {inside:.1f} ms (each node's best run)\n")
            print("| node kind | nodes | ms | share |\n|---|---:|---:|---:|")
            for kind, (n, ms) in sorted(by_kind.items(), key=lambda kv: -kv[1][1]):
                print(f"| {kind} | {n} | {ms:.2f} | {ms / inside:.0%} |")
            if per_node:
                print("\n| node | kind | input | ms |\n|---|---|---|---:|")
                for name, op, shapes, ms in got["nodes"]:
                    print(f"| {name} | {ort_kind(op, shapes)} | {shapes[0] if shapes else ''} | {ms:.3f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["efficientnet_lite0", "mobilenet_v2"],
                   choices=("efficientnet_lite0", "mobilenet_v2", "resnet50", "squeezenet"))
    p.add_argument("--batches", nargs="+", type=int, default=[32, 1])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--layers", action="store_true", help="also print every step")
    p.add_argument("--one-thread", action="store_true",
                   help="also profile with tlkit's thread count set to 1 (what a second thread gains per step)")
    p.add_argument("--onnxruntime", nargs="*", type=int, metavar="THREADS",
                   help="also ONNX Runtime's per-node profile with these intra-op thread counts (peers' Python)")
    args = p.parse_args()
    sys.path.insert(0, REPO)
    from tlkit.utils import threads
    for model_name in args.models:
        for batch in args.batches:
            profile(model_name, batch, args.runs, args.layers)
            if args.one_thread:
                before = threads.num_threads()
                threads.set_numba_threads(1)
                print("\n(one thread)")
                profile(model_name, batch, args.runs, args.layers)
                threads.set_numba_threads(before)
            if args.onnxruntime is not None and model_name != "squeezenet":
                ort_profile(model_name, batch, args.onnxruntime or [1], args.runs, args.layers)


if __name__ == "__main__":
    main()
