"""Where SqueezeNet's time goes on the route a batch really takes: groups of images, each through the
whole graph on one thread (tlkit/engine/batch_split.py), beside ONNX Runtime's own per-node profile.

    python scripts/profile_groups.py                          # b32, groups of 4, one thread and both threads
    python scripts/profile_groups.py --group-images 2 4 8     # the same per group size
    python scripts/profile_groups.py --onnxruntime            # + ORT's nodes (peer venv), 1 and all threads
    python scripts/profile_groups.py --per-node               # each group through Execution.compute, not compiled

scripts/profile_layers.py times each layer alone on the whole batch, which is not the route. Here
every node of the plan is timed as the groups route runs it (each group replays steps compiled once per
input shape, tlkit/engine/compiled_steps.py; with --per-node, Execution.compute for every group), twice:
- "one thread": the batch's groups run one after the other on the calling thread, and each
  node's time is split into its kernels (BLAS products, Winograd transforms, im2col, pooling and
  epilogue passes, timed by wrapping them) and the rest (Python: the layer call, checks, buffers);
- "both threads": the real route (predict_on_batch), each node's time summed over the threads
  (thread time): its excess over one thread is what the threads cost each other (shared caches,
  memory, the hypervisor's scheduling).
Rounds are interleaved; medians. Figures vary between runs on a shared machine: compare the
columns of one run, not runs.
"""
import argparse
import collections
import json
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PEER_PYTHON = "/work/peers/bin/python"
sys.path.insert(0, str(SCRIPTS))

import machine  # noqa: E402
import peer_models  # noqa: E402


def category(name):
    """'fire3/squeeze1x1' -> 'squeeze1x1'; 'conv1' -> 'conv1 (+ pool1)' (fused); 'pool3' -> 'pools'."""
    if "/" in name:
        return name.split("/")[-1]
    return "pools" if name.startswith("pool") else "conv1 (+ pool1)" if name == "conv1" else name


def tlkit_profile(batch, group_images, rounds, per_node=False):
    import numpy as np

    from tlkit.engine import batch_split, compiled_steps, inference_plan
    from tlkit.engine.kernels import conv, conv_pool_bands, pool, winograd
    from tlkit.utils import threads

    model = peer_models.tlkit_model("squeezenet")
    model.trainable = False  # as bench.py: frozen, transformed Winograd filters kept
    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    graph = model._graph
    parts = threads.num_threads()

    kernel_time = [0.0]

    def timed_kernel(module, name):
        fn = getattr(module, name)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                kernel_time[0] += time.perf_counter() - t0
        setattr(module, name, wrapper)

    for module, name in [(threads, "product"), (winograd, "input_transform"), (winograd, "output_transform"),
                         (conv, "add_bias_relu"), (conv_pool_bands, "im2col_rows"),
                         (conv_pool_bands, "pool_band_bias_relu"), (pool, "max_pool_rows_kernel"),
                         (pool, "max_pool_kernel")]:
        timed_kernel(module, name)

    node_total, node_kernels = collections.defaultdict(float), collections.defaultdict(float)
    compute = inference_plan.Execution.compute

    def timed_compute(self, node):
        k0, t0 = kernel_time[0], time.perf_counter()
        compute(self, node)
        node_total[node.layer.name] += time.perf_counter() - t0
        node_kernels[node.layer.name] += kernel_time[0] - k0  # exact on one thread only

    inference_plan.Execution.compute = timed_compute
    compile_node = compiled_steps._compile_node

    def timed_compile_node(run, node, *args):
        step = compile_node(run, node, *args)
        if step is None or step is compiled_steps._NOTHING:
            return step

        def timed_step(vals):
            k0, t0 = kernel_time[0], time.perf_counter()
            step(vals)
            node_total[node.layer.name] += time.perf_counter() - t0
            node_kernels[node.layer.name] += kernel_time[0] - k0
        return timed_step

    compiled_steps._compile_node = timed_compile_node
    compiled_steps.ENABLED = not per_node

    def one_thread():
        threads.limit_blas()
        threads.set_numba_threads(1)
        try:
            for i in range(0, batch, group_images):
                graph._run_group(0, [x[i:i + group_images]])
        finally:
            threads.set_numba_threads(parts)

    def both_threads():
        model.predict_on_batch(x)

    batch_split.GROUPS_PER_THREAD = max(1, batch // (group_images * parts))
    batch_split.MIN_IMAGES = min(batch_split.MIN_IMAGES, group_images)
    for _ in range(2):
        one_thread()
        both_threads()
    runs = {"one": (one_thread, []), "both": (both_threads, [])}
    for r in range(rounds):
        for key in (("one", "both") if r % 2 == 0 else ("both", "one")):
            fn, samples = runs[key]
            node_total.clear()
            node_kernels.clear()
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0, dict(node_total), dict(node_kernels)))
    out = {}
    for key, (_, samples) in runs.items():
        med = lambda vals: float(np.median(vals)) * 1e3
        names = samples[0][1].keys()
        out[key] = {"wall_ms": med([s[0] for s in samples]),
                    "nodes": {n: (med([s[1].get(n, 0.0) for s in samples]), med([s[2].get(n, 0.0) for s in samples]))
                              for n in names}}
    return out


def ort_profile(batch, threads_list):
    """{threads: {category: ms per run}} from ONNX Runtime's profiler, in the peer venv."""
    code = f"""
import collections, json, os, sys, tempfile
sys.path.insert(0, {str(SCRIPTS)!r})
import numpy as np, onnxruntime as ort, peer_models
out = {{}}
with tempfile.TemporaryDirectory() as tmp:
    peer_models.onnx_session("squeezenet", None, {batch}, os.path.join(tmp, "m.onnx"))
    x = np.random.default_rng(0).standard_normal(({batch}, 3, 224, 224)).astype(np.float32)
    for t in {list(threads_list)!r}:
        o = ort.SessionOptions()
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        o.intra_op_num_threads, o.inter_op_num_threads = t, 1
        o.enable_profiling, o.profile_file_prefix = True, os.path.join(tmp, "p%d" % t)
        s = ort.InferenceSession(os.path.join(tmp, "m.onnx"), o, providers=["CPUExecutionProvider"])
        runs = 8
        for _ in range(runs):
            s.run(None, {{"x": x}})
        acc = collections.defaultdict(float)
        for e in json.load(open(s.end_profiling())):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                n, op = e["name"][:-12], e["args"].get("op_name")
                if op == "Conv":
                    op = ("conv1" if n.startswith("/1/") else "squeeze1x1" if "Relu_output" in n
                          else "expand1x1" if "Relu_1" in n else "expand3x3")
                acc[op] += e["dur"] / runs / 1e3
        out[t] = acc
print(json.dumps(out))
"""
    done = subprocess.run([PEER_PYTHON, "-c", code], capture_output=True, text=True, check=False,
                          env=machine.peer_env())
    if done.returncode != 0:
        raise SystemExit(f"ONNX Runtime profile failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--group-images", type=int, nargs="+", default=[4])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--onnxruntime", action="store_true", help="also ORT's per-node profile (peer venv)")
    ap.add_argument("--per-node", action="store_true", help="each group through Execution.compute (no compiled steps)")
    args = ap.parse_args()
    print(machine.header())
    for g in args.group_images:
        res = tlkit_profile(args.batch, g, args.rounds, args.per_node)
        one, both = res["one"], res["both"]
        print(f"\ntlkit{' (per node)' if args.per_node else ''}, batch {args.batch}, groups of {g} images: one thread {one['wall_ms']:.1f} ms wall; "
              f"both threads {both['wall_ms']:.1f} ms wall ({args.batch / both['wall_ms'] * 1e3:.0f} img/s)")
        print(f"{'node':24s} {'1 thread':>9s} {'kernels':>8s} {'other':>7s} {'both (thread time)':>19s}")
        cats = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
        for name, (t, k) in one["nodes"].items():
            b = both["nodes"].get(name, (0.0, 0.0))[0]
            c = cats[category(name)]
            c[0] += t
            c[1] += k
            c[2] += b
            print(f"{name:24s} {t:9.2f} {k:8.2f} {t - k:7.2f} {b:19.2f}")
        print("per kind of node (ms):")
        for name, (t, k, b) in sorted(cats.items(), key=lambda kv: -kv[1][0]):
            print(f"  {name:22s} {t:9.1f} {k:8.1f} {t - k:7.1f} {b:19.1f}  (x{b / t if t else 0:.2f})")
        total = [sum(c[i] for c in cats.values()) for i in range(3)]
        print(f"  {'all nodes':22s} {total[0]:9.1f} {total[1]:8.1f} {total[0] - total[1]:7.1f} {total[2]:19.1f}")
    if args.onnxruntime:
        cores = machine.cores()
        prof = ort_profile(args.batch, sorted({1, cores}))
        print(f"\nONNX Runtime, batch {args.batch}, its profiler's node times (ms per run; with {cores} threads a "
              "node's time is wall time: x threads for thread time):")
        for t, acc in prof.items():
            print(f"  {t} thread(s): total {sum(acc.values()):.1f}: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in sorted(acc.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
