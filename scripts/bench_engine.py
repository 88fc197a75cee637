"""VGG16 convolutional base: tlkit's engine vs PyTorch and TensorFlow-Keras on CPU, side by side.

    python scripts/bench_engine.py                        # everything, table on stdout
    python scripts/bench_engine.py --batches 8 --tasks forward --frameworks tlkit torch
    python scripts/bench_engine.py --write                # also rewrite '## Engine' in BENCHMARKS.md
    python scripts/bench_engine.py --tiles 1 4 16         # tlkit only: sweep the conv tile budget (MB)
    python scripts/bench_engine.py --layers --batches 8   # tlkit only: Winograd vs direct per VGG16 layer

Tasks, on random 224x224x3 images and random weights:
  forward   13 convs 3x3 'same' + ReLU and 5 max-pools 2x2/2 (Keras's VGG16(include_top=False)),
            inference only (torch: channels_last + inference_mode; Keras: a tf.function of the model).
  finetune  one step of fine-tuning block5: forward through everything, loss = mean of the output,
            gradients of block5's 3 convs only (earlier layers frozen), plain SGD update.

Every measurement runs in its own subprocess (`--worker`), so its peak RSS (getrusage maxrss) is
its own and tlkit's process never loads TensorFlow or torch; peers run with --peer-python
(default /work/peers/bin/python when it exists, otherwise peers are skipped). Reported: images/s
as the median of --runs timed steps after warm-up, and ratios tlkit / peer (higher is better).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_PEER_PYTHON = "/work/peers/bin/python"
sys.path.insert(0, str(REPO / "scripts"))

import machine  # noqa: E402

FRAMEWORKS = ("tlkit", "tlkit-direct", "torch", "keras")  # tlkit-direct: without Winograd, the baseline
# VGG16's convolutional base: (filters, convs) per block, each block closed by a 2x2/2 max-pool.
BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


# ---------------------------------------------------------------------------------------------
# workers: each builds the model, times `runs` steps, prints one JSON line

def tlkit_vgg16_base(rng):
    """[(w, b) per conv] in Keras's kernel layout; the model is the plain loop in tlkit_step."""
    import numpy as np

    layers, channels = [], 3
    for filters, convs in BLOCKS:
        block = []
        for _ in range(convs):
            scale = np.sqrt(2.0 / (9 * channels))
            w = (rng.standard_normal((3, 3, channels, filters)) * scale).astype(np.float32)
            block.append((w, np.zeros(filters, np.float32)))
            channels = filters
        layers.append(block)
    return layers


def tlkit_worker(task, batch, size, tile_mb, direct_only=False):
    import numpy as np
    from tlkit.engine.kernels import conv, pool, winograd

    if tile_mb:
        conv.TILE_BYTES = int(tile_mb * (1 << 20))
    if direct_only:  # the 'before Winograd' baseline
        winograd.MIN_CHANNELS = 1 << 30
    rng = np.random.default_rng(0)
    blocks = tlkit_vgg16_base(rng)
    x = rng.standard_normal((batch, size, size, 3)).astype(np.float32)

    # Winograd filter transforms cached per conv, as the Conv2D layer does while weights are unchanged.
    wino = {id(w): conv.winograd_transform_filter(w) for block in blocks for w, _ in block}

    def forward(x, keep_block5):
        cache = []
        for b, block in enumerate(blocks):
            for w, bias in block:
                if keep_block5 and b == 4:
                    cache.append(x)
                x = conv.conv2d_forward(x, w, bias, padding="same", relu=True, wino_filter=wino[id(w)])
            last = keep_block5 and b == 4
            if last:
                cache.append(x)
            x, argmax = pool.max_pool2d_forward(x, (2, 2), (2, 2), "valid", with_argmax=last)
        return x, cache, argmax

    def step():
        if task == "forward":
            forward(x, False)
            return
        y, cache, argmax = forward(x, True)
        dy = np.full(y.shape, 1.0 / y.size, np.float32)  # d mean(y) / dy
        dz = pool.max_pool2d_backward(dy, argmax, cache[-1].shape)
        for i in (2, 1, 0):
            w, bias = blocks[4][i]
            dz *= cache[i + 1] > 0  # ReLU'(z) from the fused output
            dw, db = conv.conv2d_backward_weights(cache[i], dz, w.shape, padding="same")
            if i:
                dz = conv.conv2d_backward_input(dz, w, cache[i].shape, padding="same")
            w -= 0.01 * dw
            bias -= 0.01 * db
            wino[id(w)] = conv.winograd_transform_filter(w)  # the weights changed: refresh the cache

    return step


def torch_vgg16_base(batch, size):
    """(VGG16 conv base as a channels_last nn.Sequential, a random input batch)."""
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    layers, channels = [], 3
    for filters, convs in BLOCKS:
        for _ in range(convs):
            layers += [nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU(inplace=True)]
            channels = filters
        layers.append(nn.MaxPool2d(2, 2))
    model = nn.Sequential(*layers).to(memory_format=torch.channels_last)
    return model, torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)


def torch_worker(task, batch, size, tile_mb):
    import torch

    model, x = torch_vgg16_base(batch, size)
    if task == "forward":
        model.eval()

        def step():
            with torch.inference_mode():
                model(x)
        return step
    block5 = [p for m in list(model)[-7:] for p in m.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in block5:
        p.requires_grad_(True)
    opt = torch.optim.SGD(block5, lr=0.01)

    def step():
        opt.zero_grad()
        model(x).mean().backward()
        opt.step()
    return step


def keras_worker(task, batch, size, tile_mb):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import keras
    import tensorflow as tf

    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    x = tf.constant(np.random.default_rng(0).standard_normal((batch, size, size, 3)).astype(np.float32))
    if task == "forward":
        infer = tf.function(lambda x: model(x, training=False))
        return lambda: infer(x).numpy()
    for layer in model.layers:
        layer.trainable = layer.name.startswith("block5")
    opt = keras.optimizers.SGD(0.01)

    @tf.function
    def train(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return lambda: train(x).numpy()


def layers_worker(batch, size, runs):
    """Per distinct VGG16 conv shape: direct vs Winograd forward time (ms, best of runs), in this process."""
    import numpy as np
    from tlkit.engine.kernels import conv, winograd

    rng = np.random.default_rng(0)
    print("| layer input | filters | direct ms | winograd ms | direct / winograd | auto picks |\n|---|---|---|---|---|---|")
    channels, hw = 3, size
    for filters, convs in BLOCKS:
        for c in range(2):  # the first conv of a block changes the channel count, the next ones repeat
            x = rng.standard_normal((batch, hw, hw, channels)).astype(np.float32)
            w = (rng.standard_normal((3, 3, channels, filters)) * 0.05).astype(np.float32)
            u = winograd.transform_filter(w)
            routes = {"direct": lambda: conv._direct(x, w.reshape(-1, filters), None, (3, 3, 1, 1, 1, 1), 1, 1,
                                                     (hw, hw), True),
                      "winograd": lambda: winograd.conv3x3(x, None, u, None, 1, 1, (hw, hw), True)}
            ms = {}
            for name, route in routes.items():
                route()
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    route()
                    times.append(time.perf_counter() - t0)
                ms[name] = 1000 * min(times)  # min: the least disturbed run on shared cores
            auto = "winograd" if winograd.applicable(x.shape, w.shape, (1, 1), (1, 1)) else "direct"
            print(f"| {hw}x{hw}x{channels} | {filters} | {ms['direct']:.1f} | {ms['winograd']:.1f} | "
                  f"{ms['direct'] / ms['winograd']:.2f} | {auto} |", flush=True)
            channels = filters
        hw //= 2


WORKERS = {"tlkit": tlkit_worker, "torch": torch_worker, "keras": keras_worker,
           "tlkit-direct": lambda *a: tlkit_worker(*a, direct_only=True)}


def run_worker(framework, task, batch, size, runs, tile_mb):
    step = WORKERS[framework](task, batch, size, tile_mb)
    step()  # warm-up: numba cache load, TF tracing, allocator growth
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(json.dumps({"ips": batch / median, "seconds": median,
                      "peak_mb": machine.peak_rss_mb()}))


# ---------------------------------------------------------------------------------------------
# driver

def measure(python, framework, task, batch, args, tile_mb=0.0):
    cmd = [python, __file__, "--worker", framework, task, str(batch), "--size", str(args.size),
           "--runs", str(args.runs), "--tile-mb", str(tile_mb)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"  {framework} {task} batch {batch} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {framework:6s} {task:8s} batch {batch}: {result['ips']:7.2f} img/s, peak {result['peak_mb']:6.0f} MB",
          file=sys.stderr)
    return result


def table(results, frameworks, args):
    peers = [f for f in frameworks if not f.startswith("tlkit")]
    head = ["task", "batch"] + [f"{f} img/s" for f in frameworks] + [f"{f} peak MB" for f in frameworks]
    if "tlkit" in frameworks:
        head += [f"tlkit / {p}" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in args.tasks:
        for batch in args.batches:
            row = [task, str(batch)]
            got = {f: results.get((f, task, batch)) for f in frameworks}
            row += [f"{got[f]['ips']:.2f}" if got[f] else "-" for f in frameworks]
            row += [f"{got[f]['peak_mb']:.0f}" if got[f] else "-" for f in frameworks]
            if "tlkit" in frameworks:
                row += [f"{got['tlkit']['ips'] / got[p]['ips']:.2f}x" if got["tlkit"] and got[p] else "-"
                        for p in peers]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_section(text):
    """Replace (or append) the '## Engine' section of BENCHMARKS.md, atomically."""
    path = REPO / "BENCHMARKS.md"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip() == "## Engine"), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".BENCHMARKS.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=["tlkit", "torch", "keras"])
    p.add_argument("--tasks", nargs="+", choices=("forward", "finetune"), default=["forward", "finetune"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--size", type=int, default=224, help="image height and width")
    p.add_argument("--runs", type=int, default=5, help="timed steps per measurement (median reported)")
    p.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON if os.path.exists(DEFAULT_PEER_PYTHON) else None,
                   help="interpreter with torch / tensorflow+keras (default: %(default)s)")
    p.add_argument("--tiles", nargs="+", type=float, metavar="MB",
                   help="instead of the comparison: tlkit forward images/s for each conv tile budget")
    p.add_argument("--layers", action="store_true",
                   help="instead of the comparison: tlkit direct vs Winograd per VGG16 conv layer")
    p.add_argument("--write", action="store_true", help="rewrite the '## Engine' section of BENCHMARKS.md")
    p.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "TASK", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--tile-mb", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        framework, task, batch = args.worker
        run_worker(framework, task, int(batch), args.size, args.runs, args.tile_mb)
        return

    if args.layers:
        for batch in args.batches:
            print(f"batch {batch}")
            layers_worker(batch, args.size, args.runs)
        return

    if args.tiles:
        print("| tile MB | batch | tlkit forward img/s |\n|---|---|---|")
        for batch in args.batches:
            for mb in args.tiles:
                r = measure(sys.executable, "tlkit", "forward", batch, args, mb)
                print(f"| {mb:g} | {batch} | {r['ips']:.2f} |" if r else f"| {mb:g} | {batch} | failed |")
        return

    frameworks = [f for f in args.frameworks if f.startswith("tlkit") or args.peer_python]
    if len(frameworks) < len(args.frameworks):
        print("no --peer-python: peers skipped", file=sys.stderr)
    results = {}
    for task in args.tasks:
        for batch in args.batches:
            for f in frameworks:
                python = sys.executable if f.startswith("tlkit") else args.peer_python
                results[(f, task, batch)] = measure(python, f, task, batch, args)
    out = table(results, frameworks, args)
    print(out)
    if args.write:
        command = "python scripts/bench_engine.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section("## Engine\n\nVGG16 convolutional base, 224x224x3, random weights, float32 CPU, 2 cores "
                      f"(median of {args.runs} steps; peak = max RSS of the measuring process).\n\n"
                      f"Command: `{command.strip()}`\n\n{out}\n")


if __name__ == "__main__":
    main()
