"""What does training monitoring cost? fit() step time with monitoring on vs off (issue 19, bar <= 3%).

Three variants of this tree, each measured in its own fresh process, in interleaved rounds (the order
rotates every round, so load from other processes hits all alike):

    base  the optimizer kernels of the commit before monitoring (they sum no norms), no monitoring callbacks
    off   this tree's kernels (they sum the squared norms in their pass), no monitoring callbacks
    on    this tree with ResourceMonitor + GradientMonitor(log_norms=True), as `tlkit finetune` runs them

on/base is the whole cost of monitoring; on/off the callbacks' share.

Cases: "squeezenet_head" trains the default head (global average pooling + softmax) on a frozen
SqueezeNet (the base runs forward every step, as with augmentation); "pooled_head" trains the softmax
on cached pooled features (the smallest step tlkit finetune takes: the worst case for per-step
overhead); "vgg16_block5" fine-tunes VGG16's block5 (earlier layers frozen) with the head. Random
weights and images (the cost does not depend on the values).

    python scripts/bench_monitoring.py --rounds 5
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CASES = {"pooled_head": {"batch": 32, "steps": 1500}, "squeezenet_head": {"batch": 32, "steps": 4},
         "vgg16_block5": {"batch": 8, "steps": 2}}

CHILD = r"""
import importlib.util, json, sys, time
import numpy as np
import tlkit
from tlkit import layers as L
from tlkit.engine.model import Model

case, variant, batch, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if variant == "base":  # the kernels before monitoring, in place of this tree's
    from tlkit.engine.kernels import optim
    spec = importlib.util.spec_from_file_location("optim_base", sys.argv[5])
    old = importlib.util.module_from_spec(spec)
    sys.modules["optim_base"] = old  # numba's cache finds the module again by this name
    spec.loader.exec_module(old)
    for name in ("adam", "sgd_momentum", "rmsprop", "adagrad"):
        setattr(optim, name, getattr(old, name))
tlkit.utils.set_random_seed(0)
rng = np.random.default_rng(0)
classes = 5
if case == "pooled_head":
    model = tlkit.Sequential([tlkit.Input((512,)), L.Dense(classes, activation="softmax")])
    x = rng.standard_normal((batch * steps, 512)).astype(np.float32)
else:
    from tlkit.zoo.squeezenet import SqueezeNet
    from tlkit.zoo.vgg16 import VGG16
    base = (SqueezeNet if case == "squeezenet_head" else VGG16)(include_top=False, weights=None,
                                                               input_shape=(224, 224, 3))
    for layer in base.layers:
        layer.trainable = case == "vgg16_block5" and layer.name.startswith("block5")
    inp = tlkit.Input((224, 224, 3))
    out = L.Dense(classes, activation="softmax")(L.GlobalAveragePooling2D()(base(inp)))
    model = Model(inp, out)
    x = rng.standard_normal((batch * steps, 224, 224, 3)).astype(np.float32)
y = tlkit.utils.to_categorical(rng.integers(0, classes, len(x)), classes)
model.compile(tlkit.optimizers.Adam(1e-3), "categorical_crossentropy", ["accuracy"])
callbacks, hook_seconds = [], [0.0]
if variant == "on":
    from tlkit.callbacks import GradientMonitor, ResourceMonitor
    callbacks = [ResourceMonitor(), GradientMonitor(log_norms=True, group=lambda name: name.split("_")[0])]

    def timed(hook):  # the callbacks' own time, measured inside the same steps (robust to machine load)
        def call(*args, **kwargs):
            t = time.perf_counter()
            hook(*args, **kwargs)
            hook_seconds[0] += time.perf_counter() - t
        return call

    for cb in callbacks:
        for name in ("on_train_batch_begin", "on_train_batch_end", "on_epoch_begin", "on_epoch_end"):
            setattr(cb, name, timed(getattr(cb, name)))
model.fit(x[:batch * 2], y[:batch * 2], batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)  # compile
best = None
for _ in range(2):
    hook_seconds[0] = 0.0
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
    elapsed = time.perf_counter() - t
    if best is None or elapsed < best[0]:
        best = (elapsed, hook_seconds[0])
print(json.dumps({"step_seconds": best[0] / steps, "hook_share": best[1] / best[0]}))
"""


def measure(tree, case, variant, base_kernels):
    env = dict(os.environ, PYTHONPATH=tree)
    cfg = CASES[case]
    out = subprocess.run([sys.executable, "-c", CHILD, case, variant, str(cfg["batch"]), str(cfg["steps"]),
                          base_kernels], env=env, cwd=tree, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{case}/{variant} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


KERNEL = r"""
import importlib.util, sys, time
import numpy as np
from tlkit.engine.kernels import optim
spec = importlib.util.spec_from_file_location("optim_base", sys.argv[1])
old = importlib.util.module_from_spec(spec)
sys.modules["optim_base"] = old
spec.loader.exec_module(old)
f = np.float32
n = 7_079_424  # VGG16 block5's three 3x3x512x512 kernels and biases
w, g, m, v = (np.full(n, 0.5, f) for _ in range(4))
args = (np.zeros(0, f), f(1e-5), f(0.1), f(0.001), f(1e-7), False)
best = {"base": [], "this": []}
for name, mod in (("base", old), ("this", optim)) * 8:  # interleaved: load hits both alike
    mod.adam(w, g, m, v, *args)
    t = time.perf_counter()
    for _ in range(5):
        mod.adam(w, g, m, v, *args)
    best[name].append((time.perf_counter() - t) / 5)
print(min(best["base"]) * 1e3, min(best["this"]) * 1e3)
"""


def kernel_cost(base_kernels):
    """The Adam kernel on VGG16 block5's 7.1M weights, with and without the norm sums (fastest of 8)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", KERNEL, base_kernels], env=dict(os.environ, PYTHONPATH=here),
                         cwd=here, capture_output=True, text=True, check=True)
    base, this = map(float, out.stdout.split())
    return f"Adam update of 7.1M weights (block5): base kernels {base:.2f} ms, with the norm sums {this:.2f} ms"


def cpu_model():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="7c30b33", help="commit without monitoring to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; load average before: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        base_kernels = os.path.join(scratch, "optim_base.py")
        with open(base_kernels, "w") as f:
            f.write(subprocess.run(["git", "-C", here, "show", f"{args.base}:tlkit/engine/kernels/optim.py"],
                                   check=True, capture_output=True, text=True).stdout)
        order = ["base", "off", "on"]
        for case in args.cases:
            times, shares = {v: [] for v in order}, []
            for r in range(args.rounds):
                for variant in order[r % 3:] + order[:r % 3]:
                    result = measure(here, case, variant, base_kernels)
                    times[variant].append(result["step_seconds"])
                    if variant == "on":
                        shares.append(result["hook_share"])
                print(f"{case} round {r + 1}/{args.rounds}: " +
                      "  ".join(f"{v} {times[v][-1] * 1e3:.2f} ms" for v in order), flush=True)
            med = {v: statistics.median(t) for v, t in times.items()}
            ratios = [on / base for on, base in zip(times["on"], times["base"])]
            print(f"{case} (batch {CASES[case]['batch']}): median step base {med['base'] * 1e3:.2f} ms, off "
                  f"{med['off'] * 1e3:.2f} ms, on {med['on'] * 1e3:.2f} ms; on/base {med['on'] / med['base']:.3f} "
                  f"(per round {min(ratios):.3f}-{max(ratios):.3f}), on/off {med['on'] / med['off']:.3f}, "
                  f"fastest rounds on/base {min(times['on']) / min(times['base']):.3f}; the monitoring callbacks' "
                  f"own share of the 'on' fit time {100 * statistics.median(shares):.2f}%", flush=True)
        print(kernel_cost(base_kernels), flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
