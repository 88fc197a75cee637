"""Every performance figure of issue 7, side by side with the peers, in one run.

    python scripts/bench.py                 # all sections, tables on stdout (~25 min on 2 cores)
    python scripts/bench.py --quick         # fewer steps, one round, no scaling tables
    python scripts/bench.py --write         # also rewrite the '## Performance' section of BENCHMARKS.md

What it measures (tlkit through its public model API, as users run it; peers when --peer-python has
them, by default /work/peers/bin/python):
  vgg16-forward   VGG16(include_top=False) forward, 224x224, batch 8; images/s and peak RSS.
  vgg16-finetune  one training step, blocks 1-4 frozen, block5 trainable, GAP + Dense(10) head, SGD,
                  batch 8 (tlkit: compile + train_on_batch; torch: autograd; Keras: train_on_batch).
  squeezenet      SqueezeNet v1.1 base forward, 224x224, batch 32 (tlkit vs TF-Keras).
  scaling         tlkit VGG16 forward against batch (1, 8, 32), image size (128, 224, 320) and
                  threads (1 vs 2).
  startup         `import tlkit` with a warm numba cache, and the one-off numba compile time
                  (first forward + backward + augmentation with an empty cache).
Every measurement runs in its own subprocess, so peak memory is its own and tlkit's process never
loads TensorFlow or torch. Machines are noisy: each peer comparison runs --rounds times in turn
(tlkit, torch, Keras, tlkit, ...) and reports medians and the range of the per-round ratios.
"""
import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
PEER_PYTHON = "/work/peers/bin/python"
sys.path.insert(0, str(REPO / "scripts"))


# ---------------------------------------------------------------------------------------------
# workers (each returns a zero-argument step function)

def tlkit_worker(task, batch, size):
    import numpy as np

    import tlkit
    from tlkit import layers as L
    from tlkit.zoo import SqueezeNet, VGG16

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, 3)).astype(np.float32)
    if task == "squeezenet":
        base = SqueezeNet(weights=None, input_shape=(size, size, 3))
        base.trainable = False
        return lambda: base.predict_on_batch(x)
    base = VGG16(include_top=False, weights=None, input_shape=(size, size, 3))
    if task == "vgg16-forward":
        base.trainable = False
        return lambda: base.predict_on_batch(x)
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block5")
    inp = tlkit.Input((size, size, 3))
    model = tlkit.Model(inp, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(base(inp))))
    model.compile(tlkit.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    y = rng.integers(0, 10, batch)
    return lambda: model.train_on_batch(x, y)


def torch_worker(task, batch, size):
    import torch
    from torch import nn

    import bench_engine

    if task == "vgg16-forward":
        return bench_engine.torch_worker("forward", batch, size, 0)
    base, x = bench_engine.torch_vgg16_base(batch, size)
    head = nn.Linear(512, 10)
    for p in base.parameters():
        p.requires_grad_(False)
    trainable = [p for m in list(base)[-7:] for p in m.parameters()] + list(head.parameters())
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.SGD(trainable, lr=0.01)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        logits = head(base(x).mean(dim=(2, 3)))
        nn.functional.cross_entropy(logits, y).backward()
        opt.step()
    return step


def keras_worker(task, batch, size):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    x = np.random.default_rng(0).standard_normal((batch, size, size, 3)).astype(np.float32)
    if task == "squeezenet":
        import tf_keras

        from keras_finetune import squeezenet
        model = squeezenet(tf_keras, (size, size, 3))
        return lambda: model.predict_on_batch(x)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    if task == "vgg16-forward":
        return lambda: base.predict_on_batch(x)
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block5")
    inp = keras.Input((size, size, 3))
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(base(inp))))
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    y = np.random.default_rng(0).integers(0, 10, batch)
    return lambda: model.train_on_batch(x, y)


WORKERS = {"tlkit": tlkit_worker, "torch": torch_worker, "keras": keras_worker}


def run_worker(framework, task, batch, size, runs):
    step = WORKERS[framework](task, batch, size)
    for _ in range(2):  # warm-up: numba cache load, TF tracing (it keeps warming past its first call), allocators
        step()
    if task == "squeezenet":  # sub-second steps: time more of them, the median steadies
        runs *= 4
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(json.dumps({"ips": batch / median, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def startup_worker():
    """Compile everything a fine-tuning run needs, from an empty numba cache (set by the caller)."""
    t0 = time.perf_counter()
    import numpy as np

    import tlkit
    from tlkit import layers as L
    from tlkit.augment import ImageDataGenerator

    model = tlkit.Sequential([tlkit.Input((32, 32, 3)), L.Conv2D(16, 3, padding="same", activation="relu"),
                              L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(),
                              L.AveragePooling2D(), L.GlobalAveragePooling2D(), L.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x = np.random.default_rng(0).random((8, 32, 32, 3)).astype(np.float32)
    gen = ImageDataGenerator(rotation_range=10, zoom_range=0.1, horizontal_flip=True)
    model.fit(gen.flow(x, np.arange(8) % 2, batch_size=4), epochs=1, verbose=0)
    model.predict(x, verbose=0)
    print(json.dumps({"seconds": time.perf_counter() - t0}))


# ---------------------------------------------------------------------------------------------
# driver

def measure(framework, task, batch, size, runs, peer_python, threads=None):
    python = sys.executable if framework == "tlkit" else peer_python
    if python is None:
        return None
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "scripts")]))
    if threads:
        env.update(NUMBA_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    cmd = [python, __file__, "--worker", framework, task, str(batch), str(size), str(runs)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"  {framework} {task} b{batch} {size}px failed:\n{done.stderr[-1500:]}", file=sys.stderr)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {framework:5s} {task:15s} b{batch:<3d} {size}px threads={threads or 'all'}: {result['ips']:7.2f} img/s, "
          f"peak {result['peak_mb']:6.0f} MB", file=sys.stderr, flush=True)
    return result


def fmt(r, key="ips", spec=".2f"):
    return format(r[key], spec) if r else "-"


def ratio(a, b):
    """tlkit / peer of the medians, and the range of the per-round ratios (rounds ran back to back)."""
    if not a or not b:
        return "-"
    rounds = sorted(x / y for x, y in zip(a["rounds"], b["rounds"]))
    spread = f" ({rounds[0]:.2f}-{rounds[-1]:.2f})" if len(rounds) > 1 else ""
    return f"{a['ips'] / b['ips']:.2f}x{spread}"


def interleaved(frameworks, task, batch, runs, rounds, peer_python):
    """Each framework measured ``rounds`` times, in turn (tlkit, torch, Keras, tlkit, ...), so a slow
    spell of this shared machine hits them all alike; {framework: median img/s, max peak, per round}."""
    got = {f: [] for f in frameworks}
    for _ in range(rounds):
        for f in frameworks:
            r = measure(f, task, batch, 224, runs, peer_python)
            if r:
                got[f].append(r)
    return {f: {"ips": statistics.median(r["ips"] for r in rs), "peak_mb": max(r["peak_mb"] for r in rs),
                "rounds": [r["ips"] for r in rs]} if len(rs) == rounds else None for f, rs in got.items()}


def comparison(runs, rounds, peer_python):
    rows = ["| figure | tlkit img/s | torch img/s | Keras img/s | tlkit / torch | tlkit / Keras | "
            "tlkit peak MB | torch peak MB | Keras peak MB | bar |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    cases = [("vgg16-forward", 8, ">= 1.5x both, memory <= Keras"), ("vgg16-finetune", 8, ">= 1.5x torch"),
             ("squeezenet", 32, ">= 1x Keras")]
    for task, batch, bar in cases:
        frameworks = ("tlkit", "keras") if task == "squeezenet" else ("tlkit", "torch", "keras")
        got = interleaved(frameworks, task, batch, runs, rounds, peer_python)
        t, p, k = got.get("tlkit"), got.get("torch"), got.get("keras")
        rows.append(f"| {task}, batch {batch} | {fmt(t)} | {fmt(p)} | {fmt(k)} | {ratio(t, p)} | {ratio(t, k)} | "
                    f"{fmt(t, 'peak_mb', '.0f')} | {fmt(p, 'peak_mb', '.0f')} | {fmt(k, 'peak_mb', '.0f')} | {bar} |")
    return "\n".join(rows)


def scaling(runs):
    rows = ["| batch | image size | threads | tlkit VGG16 forward img/s |", "|---:|---:|---:|---:|"]
    for batch, size, threads in ([(b, 224, None) for b in (1, 8, 32)] + [(8, s, None) for s in (128, 320)] +
                                 [(8, 224, 1)]):
        r = measure("tlkit", "vgg16-forward", batch, size, runs, None, threads)
        rows.append(f"| {batch} | {size} | {threads or 2} | {fmt(r)} |")
    return "\n".join(rows)


def startup():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory() as cache:
        cold = subprocess.run([sys.executable, __file__, "--startup-worker"], capture_output=True, text=True,
                              env=dict(env, NUMBA_CACHE_DIR=cache))
        warm = subprocess.run([sys.executable, __file__, "--startup-worker"], capture_output=True, text=True,
                              env=dict(env, NUMBA_CACHE_DIR=cache))
    seconds = [json.loads(r.stdout.strip().splitlines()[-1])["seconds"] for r in (cold, warm)]
    imports = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tlkit"], check=True, env=env)
        imports.append(time.perf_counter() - t0)
    return ("| startup | seconds |\n|---|---:|\n"
            f"| `python -c 'import tlkit'` (whole process, median of 5) | {statistics.median(imports):.2f} |\n"
            f"| first tiny fit + predict, empty numba cache (compiles every kernel) | {seconds[0]:.1f} |\n"
            f"| the same with the cache warm | {seconds[1]:.1f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="timed steps per measurement (x4 for SqueezeNet)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repeats of each peer comparison")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--peer-python", default=PEER_PYTHON if os.path.exists(PEER_PYTHON) else None)
    p.add_argument("--write", action="store_true")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--startup-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        framework, task, batch, size, runs = args.worker
        return run_worker(framework, task, int(batch), int(size), int(runs))
    if args.startup_worker:
        return startup_worker()
    runs, rounds = (2, 1) if args.quick else (args.runs, args.rounds)
    sections = ["### Against the peers (224x224, 2 cores)\n\n" + comparison(runs, rounds, args.peer_python)]
    if not args.quick:
        sections.append("### Scaling (tlkit)\n\n" + scaling(runs))
    sections.append("### Start-up\n\n" + startup())
    text = "\n\n".join(sections)
    print(text)
    if args.write:
        from acceptance_finetune import write_section

        command = "python scripts/bench.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
        write_section("## Performance", f"Command: `{command.strip()}` (each figure: median of {runs} timed "
                                        f"steps, {4 * runs} for SqueezeNet, after 2 warm-up steps; against the "
                                        f"peers, the median of {rounds} rounds run in turn, with the range of "
                                        f"the per-round ratios in brackets; peak = max RSS of the measuring "
                                        f"process)\n\n{text}\n")


if __name__ == "__main__":
    main()
