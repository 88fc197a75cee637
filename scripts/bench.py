"""tlkit against torch, Keras 3 and ONNX Runtime on the same networks with the same weights (issue 16).

    python scripts/bench.py                    # every case, 3 interleaved rounds (~25-35 min on 2 cores)
    python scripts/bench.py --quick            # 1 round, 2 timed steps: a smoke run (~8 min)
    python scripts/bench.py --cases vgg16-forward-8 squeezenet-forward-32 --frameworks tlkit onnxruntime
    python scripts/bench.py --write            # also rewrite the '## Against the peers' section of BENCHMARKS.md

Cases: VGG16 conv base forward 224x224 at batch 8 and 1; SqueezeNet v1.1 base forward at batch 32
and 1; one VGG16 block5 fine-tuning step at batch 8 (blocks 1-4 frozen, GAP + Dense(10) head,
SGD momentum 0.9, cross-entropy) for tlkit, torch and Keras.
Each framework on its fastest fp32 path: torch channels_last + inference_mode (autograd for the
step); Keras 3 as a tf.function, with and without XLA (jit_compile) timed in the worker and the
faster kept; ONNX Runtime on the model exported from the torch module (opset 23, all graph
optimizations, intra-op threads = cores).
Honesty rules: every framework runs in its own process (its peak RSS, VmHWM, is its own); rounds are
interleaved (tlkit, torch, keras, onnxruntime, tlkit, ...) so a slow spell hits all alike; all load
the conv weights tlkit drew and check their output against tlkit's on one input (the 'agrees'
column: max |difference| / max |output|); each table says the CPU, core count, load, numpy's and
torch's sgemm rate, and every figure comes with its effective GFLOP/s (the network's
multiply-adds x2 / time; Winograd can make this exceed the BLAS rate). A peer whose VGG16
forward runs below half the machine's sgemm rate marks the run SUSPECT: that peer is not on its
fast path (or the machine was busy). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are dropped for the
workers (see machine.py); each worker's threadpools are listed at the end.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PEER_PYTHON = "/work/peers/bin/python"
sys.path.insert(0, str(SCRIPTS))

import machine  # noqa: E402
import peer_models  # noqa: E402

FRAMEWORKS = ("tlkit", "torch", "keras", "onnxruntime")
CASES = {  # name: (model, task, batch)
    "vgg16-forward-8": ("vgg16", "forward", 8),
    "vgg16-forward-1": ("vgg16", "forward", 1),
    "squeezenet-forward-32": ("squeezenet", "forward", 32),
    "squeezenet-forward-1": ("squeezenet", "forward", 1),
    "vgg16-finetune-8": ("vgg16", "finetune", 8),
}
LR, MOMENTUM, CLASSES = 0.01, 0.9, 10


# ---------------------------------------------------------------------------------------------
# workers: build the model from the weight file, check it, return a zero-argument step

def tlkit_step(model, task, batch, weights_file):
    import numpy as np

    import tlkit
    from tlkit import layers as L

    names, weights, x_ref, y_ref = peer_models.load(weights_file)
    base = peer_models.tlkit_model(model)
    for name, (kernel, bias) in zip(names, weights, strict=True):
        base.get_layer(name).set_weights([kernel, bias])
    del weights  # the layers hold copies: the file's arrays are not the forward's memory
    agrees = peer_models.agreement(base.predict_on_batch(x_ref), y_ref)
    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    if task == "forward":
        base.trainable = False
        return (lambda: base.predict_on_batch(x)), agrees, {}
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block5")
    inp = tlkit.Input((224, 224, 3))
    net = tlkit.Model(inp, L.Dense(CLASSES)(L.GlobalAveragePooling2D()(base(inp))))
    net.compile(tlkit.optimizers.SGD(LR, momentum=MOMENTUM),
                tlkit.losses.SparseCategoricalCrossentropy(from_logits=True))
    y = np.random.default_rng(0).integers(0, CLASSES, batch)
    return (lambda: net.train_on_batch(x, y)), agrees, {}


def torch_step(model, task, batch, weights_file):
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(machine.cores())
    _, weights, x_ref, y_ref = peer_models.load(weights_file)
    net = peer_models.torch_model(model, weights)
    del weights  # as for tlkit: the module holds copies
    with torch.inference_mode():
        agrees = peer_models.agreement(peer_models.torch_output(net(peer_models.torch_input(x_ref))), y_ref)
    x = peer_models.torch_input(np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32))
    if task == "forward":
        def forward():
            with torch.inference_mode():
                net(x)
        return forward, agrees, {}
    for p in net.parameters():
        p.requires_grad_(False)
    block5 = [p for m in list(net)[-7:] for p in m.parameters()]  # 3 convs (+ ReLUs) and the pool
    head = nn.Linear(512, CLASSES)
    trainable = block5 + list(head.parameters())
    for p in trainable:
        p.requires_grad_(True)
    net.train()
    opt = torch.optim.SGD(trainable, lr=LR, momentum=MOMENTUM)
    y = torch.from_numpy(np.random.default_rng(0).integers(0, CLASSES, batch))

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(head(net(x).mean(dim=(2, 3))), y).backward()
        opt.step()
    return step, agrees, {}


def keras_step(model, task, batch, weights_file):
    import keras
    import numpy as np
    import tensorflow as tf

    names, weights, x_ref, y_ref = peer_models.load(weights_file)
    base = peer_models.keras_model(model, names, weights)
    agrees = peer_models.agreement(base(x_ref, training=False), y_ref)
    x = tf.constant(np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32))
    if task == "forward":
        variants = {jit: tf.function(lambda x: base(x, training=False), jit_compile=jit) for jit in (False, True)}
        make = lambda jit: (lambda: variants[jit](x).numpy())  # noqa: E731
    else:
        for layer in base.layers:
            layer.trainable = layer.name.startswith("block5")
        inp = keras.Input((224, 224, 3))
        net = keras.Model(inp, keras.layers.Dense(CLASSES)(keras.layers.GlobalAveragePooling2D()(base(inp))))
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        y = tf.constant(np.random.default_rng(0).integers(0, CLASSES, batch))
        opts = {jit: keras.optimizers.SGD(LR, momentum=MOMENTUM) for jit in (False, True)}

        def train(jit):
            opt = opts[jit]

            def one(x, y):
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, net(x, training=True))
                grads = tape.gradient(loss, net.trainable_variables)
                opt.apply_gradients(zip(grads, net.trainable_variables))
                return loss
            return tf.function(one, jit_compile=jit)
        variants = {jit: train(jit) for jit in (False, True)}
        make = lambda jit: (lambda: variants[jit](x, y).numpy())  # noqa: E731
    timings = {}
    for jit in (False, True):  # measure and pick: XLA helps some graphs on some CPUs, hurts others
        step = make(jit)
        try:
            step()
            step()
            timings[jit] = min(machine.timed(step) for _ in range(2))
        except Exception as e:  # noqa: BLE001 - an XLA failure just leaves the plain graph
            print(f"keras jit_compile={jit} failed: {type(e).__name__}: {e}"[:300], file=sys.stderr)
    best = min(timings, key=timings.get)
    return make(best), agrees, {"jit_compile": best}


def onnxruntime_step(model, task, batch, weights_file):
    import numpy as np
    import onnxruntime as ort

    onnx_file = f"{weights_file}.b{batch}.onnx"  # exported by the driver's prepare step (torch not loaded here)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = machine.cores()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
    _, _, x_ref, y_ref = peer_models.load(weights_file)
    ref_session = session if batch == x_ref.shape[0] else ort.InferenceSession(
        f"{weights_file}.b{x_ref.shape[0]}.onnx", options, providers=["CPUExecutionProvider"])
    nchw = lambda a: np.ascontiguousarray(a.transpose(0, 3, 1, 2))  # noqa: E731
    y = ref_session.run(None, {"x": nchw(x_ref)})[0].transpose(0, 2, 3, 1)
    del ref_session
    agrees = peer_models.agreement(y, y_ref)
    x = nchw(np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32))
    return (lambda: session.run(None, {"x": x})), agrees, {}


STEPS = {"tlkit": tlkit_step, "torch": torch_step, "keras": keras_step, "onnxruntime": onnxruntime_step}


def run_worker(framework, model, task, batch, runs, weights_file):
    step, agrees, extra = STEPS[framework](model, task, batch, weights_file)
    for _ in range(2):  # warm-up: numba cache load, graph tracing, allocators
        step()
    if model == "squeezenet" or batch == 1:  # sub-second steps: time more of them, the median steadies
        runs *= 4
    times = [machine.timed(step) for _ in range(runs)]
    print(json.dumps({"ips": batch / statistics.median(times), "agrees": agrees, **extra,
                      "peak_mb": machine.peak_rss_mb(),
                      "threads": machine.thread_report()}))


def prepare_worker(model, weights_file, batches):
    """tlkit process: draw the weights, write them with a reference output (batch 1)."""
    import tlkit

    tlkit.utils.set_random_seed(0)
    peer_models.dump(peer_models.tlkit_model(model), weights_file, batch=1)


def export_worker(model, weights_file, batches):
    _, weights, _, _ = peer_models.load(weights_file)
    for batch in sorted(set(batches) | {1}):
        peer_models.onnx_session(model, weights, batch, f"{weights_file}.b{batch}.onnx")


def sgemm_worker(which):
    rate = machine.torch_sgemm_gflops() if which == "torch" else machine.sgemm_gflops()
    print(json.dumps({"gflops": rate, "threads": machine.thread_report()}))


# ---------------------------------------------------------------------------------------------
# driver

def call(python, *argv, quiet=False):
    env = machine.peer_env(extra={"PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPTS)])})
    done = subprocess.run([python, __file__, *argv], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        if not quiet:
            print(f"  {' '.join(argv[:4])} failed:\n{done.stderr[-1500:]}", file=sys.stderr)
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def flops_per_image(model, task):
    """Multiply-adds x 2 of the conv layers (forward; the step adds block5's weight and input
    gradients, less block5_conv1's input gradient, which a frozen prefix never needs)."""
    layers = peer_models.conv_shapes(model)
    forward = sum(f for _, f in layers)
    if task == "forward":
        return forward
    block5 = [f for name, f in layers if name.startswith("block5")]
    return forward + 2 * sum(block5) - block5[0]


def interleaved(case, frameworks, args, weights_file):
    model, task, batch = CASES[case]
    got = {f: [] for f in frameworks}
    for _ in range(args.rounds):
        for f in frameworks:
            python = sys.executable if f == "tlkit" else args.peer_python
            r = call(python, "--worker", f, model, task, str(batch), str(args.runs), weights_file)
            if r:
                got[f].append(r)
                print(f"  {case:22s} {f:11s} {r['ips']:8.2f} img/s  peak {r['peak_mb']:6.0f} MB  "
                      f"agrees {r['agrees']:.1e}{'  jit' if r.get('jit_compile') else ''}", file=sys.stderr, flush=True)
    return {f: {"ips": statistics.median(r["ips"] for r in rs), "peak_mb": max(r["peak_mb"] for r in rs),
                "agrees": max(r["agrees"] for r in rs), "rounds": [r["ips"] for r in rs],
                "jit": rs[-1].get("jit_compile"), "threads": rs[-1]["threads"]}
            for f, rs in got.items() if rs}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="timed steps per measurement (x4 for SqueezeNet and batch 1)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every case")
    p.add_argument("--quick", action="store_true", help="1 round, 2 timed steps")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    p.add_argument("--peer-python", default=PEER_PYTHON)
    p.add_argument("--write", action="store_true")
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    p.add_argument("--prepare", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--export", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--sgemm", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        framework, model, task, batch, runs, weights_file = args.worker
        return run_worker(framework, model, task, int(batch), int(runs), weights_file)
    if args.prepare or args.export:
        model, weights_file, *batches = args.prepare or args.export
        return (prepare_worker if args.prepare else export_worker)(model, weights_file, [int(b) for b in batches])
    if args.sgemm:
        return sgemm_worker(args.sgemm)
    if args.quick:
        args.runs, args.rounds = 2, 1
    have_peers = os.path.exists(args.peer_python)
    frameworks = [f for f in args.frameworks if f == "tlkit" or have_peers]
    load_before = machine.loadavg()
    sgemm = call(sys.executable, "--sgemm", "numpy")
    torch_sgemm = call(args.peer_python, "--sgemm", "torch") if have_peers else None
    sgemm_rate = sgemm["gflops"] if sgemm else None
    results, suspect = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for model in sorted({CASES[c][0] for c in args.cases}):
            weights_file = os.path.join(tmp, f"{model}.npz")
            call(sys.executable, "--prepare", model, weights_file)
            if "onnxruntime" in frameworks:
                batches = [str(CASES[c][2]) for c in args.cases if CASES[c][:2] == (model, "forward")]
                call(args.peer_python, "--export", model, weights_file, *batches)
        for case in args.cases:
            model, task, batch = CASES[case]
            names = [f for f in frameworks if not (task == "finetune" and f == "onnxruntime")]
            results[case] = interleaved(case, names, args, os.path.join(tmp, f"{model}.npz"))
    header = machine.header(sgemm_rate, torch_sgemm["gflops"] if torch_sgemm else None, load_before)
    rows = ["| case | " + " | ".join(f"{f} img/s (GFLOP/s)" for f in frameworks) + " | tlkit / best peer | "
            + " | ".join(f"{f} peak MB" for f in frameworks) + " | agrees (worst) |",
            "|---|" + "---:|" * (2 * len(frameworks) + 2)]
    for case, got in results.items():
        model, task, batch = CASES[case]
        gflop = flops_per_image(model, task) / 1e9
        cells, peaks = [], []
        for f in frameworks:
            r = got.get(f)
            if not r:
                cells.append("-")
                peaks.append("-")
                continue
            rate = r["ips"] * gflop
            mark = " (XLA)" if r.get("jit") else ""
            cells.append(f"{r['ips']:.2f} ({rate:.0f}){mark}")
            peaks.append(f"{r['peak_mb']:.0f}")
            if f != "tlkit" and model == "vgg16" and task == "forward" and sgemm_rate and rate < sgemm_rate / 2:
                suspect.append(f"{f} {case}: {rate:.0f} GFLOP/s < half of sgemm {sgemm_rate:.0f}")
        peers = {f: r for f, r in got.items() if f != "tlkit"}
        best = max(peers, key=lambda f: peers[f]["ips"]) if peers else None
        if best and "tlkit" in got:
            rounds = sorted(a / b for a, b in zip(got["tlkit"]["rounds"], peers[best]["rounds"]))
            spread = f" ({rounds[0]:.2f}-{rounds[-1]:.2f})" if len(rounds) > 1 else ""
            ratio = f"{got['tlkit']['ips'] / peers[best]['ips']:.2f}x {best}{spread}"
        else:
            ratio = "-"
        worst = max((r["agrees"] for r in got.values()), default=float("nan"))
        rows.append(f"| {case} | " + " | ".join(cells) + f" | {ratio} | " + " | ".join(peaks) + f" | {worst:.0e} |")
    verdict = ("**SUSPECT**: " + "; ".join(suspect)) if suspect else "peers at >= half the sgemm rate on VGG16: plausible"
    threads = sorted({f"{f}: " + ", ".join(f"{t['api']} {t['threads']}t {t['architecture']}".strip()
                                             for t in r["threads"]) for got in results.values()
                      for f, r in got.items()})
    text = (f"{header}.\n"
            f"Median of {args.rounds} interleaved round(s) of {args.runs} timed steps (x4 for SqueezeNet and "
            f"batch 1) after 2 warm-up steps; ratios: tlkit / fastest peer, per-round range in brackets. "
            f"GFLOP/s: the network's multiply-adds x2 per second. Run check: {verdict}.\n\n"
            + "\n".join(rows) + "\n\nThreadpools per worker (threadpoolctl): " + "; ".join(threads) + "\n")
    machine.publish("## Against the peers", text, args.write)

if __name__ == "__main__":
    main()
