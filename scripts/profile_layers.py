"""Where the time goes: per-layer time and GFLOP/s for tlkit, beside torch's for the same layer alone.

    python scripts/profile_layers.py                          # VGG16 b8 + SqueezeNet b32 forward, block5 step (~6 min)
    python scripts/profile_layers.py --models squeezenet --batch 1
    python scripts/profile_layers.py --no-torch               # tlkit only

tlkit: each layer called alone through the public layer API on the input the model gives it
(inference: ``layer(x)``; the step: ``layer.forward`` then ``layer.backward`` for block5 and the
head), best of --runs calls after a warm-up. The whole model's time is printed too: the model
fuses a few pairs (a small conv with the max pool after it, convs writing into their concatenation)
and reuses buffers, so its total is below the sum of the layers alone.
torch: each module of the same network alone (channels_last, inference_mode; the step's block5
convs forward + backward), in its own process from the peer venv. SqueezeNet's fire modules are
timed whole by torch (its concatenation cannot be split off), and summed for tlkit on a
'fireN (block)' line.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PEER_PYTHON = "/work/peers/bin/python"
sys.path.insert(0, str(SCRIPTS))

import machine  # noqa: E402
import peer_models  # noqa: E402


def best_ms(fn, runs):
    return machine.best_seconds(fn, runs) * 1e3


# ---------------------------------------------------------------------------------------------
# tlkit

def layer_inputs(model, x):
    """[(layer, its input array)] for every non-input layer, running the model layer by layer."""
    values = {id(model.inputs[0]): x}
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        node = layer._inbound_nodes[-1]
        args = [values[id(t)] for t in node.inputs]
        arg = args if node.input_structure else args[0]
        out.append((layer, arg))
        values[id(node.outputs[0])] = layer(arg)
    return out


def tlkit_worker(model_name, batch, runs, task):
    import numpy as np

    import tlkit

    tlkit.utils.set_random_seed(0)
    model = peer_models.tlkit_model(model_name)
    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    rows = {}
    pairs = layer_inputs(model, x)
    if task == "forward":
        model.trainable = False
        for layer, arg in pairs:
            rows[layer.name] = best_ms(lambda: layer(arg), runs)
        total = best_ms(lambda: model.predict_on_batch(x), runs)
    else:  # the block5 step: frozen layers run as inference, block5 forward + backward
        for layer, arg in pairs:
            if not layer.name.startswith("block5"):
                rows[layer.name] = best_ms(lambda: layer(arg), runs)
                continue

            def step(layer=layer, arg=arg):
                out, cache = layer.forward(arg, training=True)
                layer.backward(cache, np.ones_like(out), need_input_grad=layer.name != "block5_conv1")
            rows[layer.name] = best_ms(step, runs)
        total = None
    print(json.dumps({"rows": rows, "total_ms": total, "threads": machine.thread_report()}))


# ---------------------------------------------------------------------------------------------
# torch

def torch_worker(model_name, batch, runs, task):
    import numpy as np
    import torch

    torch.set_num_threads(machine.cores())
    net = peer_models.torch_model(model_name)
    x = peer_models.torch_input(np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32))
    names = [n for n, _ in peer_models.conv_shapes(model_name)]
    rows, convs, pools = {}, iter(n for n in names if "/" not in n), 0
    fires = iter(sorted({n.split("/")[0] for n in names if "/" in n}, key=lambda s: int(s[4:])))
    modules = list(net)
    i = 0
    while i < len(modules):
        m = modules[i]
        with torch.inference_mode():
            y = m(x)
        kind = type(m).__name__
        if kind == "Conv2d":  # time the conv with its ReLU, as one tlkit layer
            relu = modules[i + 1]
            name = next(convs)
            if task == "finetune" and name.startswith("block5"):
                for p in m.parameters():
                    p.requires_grad_(True)
                xin = x.clone().requires_grad_(name != "block5_conv1")

                def step(m=m, relu=relu, xin=xin):
                    relu(m(xin)).sum().backward()
                rows[name] = best_ms(step, runs)
            else:
                with torch.inference_mode():
                    rows[name] = best_ms(lambda m=m, relu=relu, x=x: relu(m(x)), runs)
            with torch.inference_mode():
                y = relu(m(x))
            i += 2
        else:
            name = next(fires) + " (block)" if kind == "Fire" else f"pool{pools}"
            if kind != "Fire":
                pools += 1
            with torch.inference_mode():
                rows[name] = best_ms(lambda m=m, x=x: m(x), runs)
            i += 1
        x = y.detach()
    total = None
    if task == "forward":
        with torch.inference_mode():
            total = best_ms(lambda: net(peer_models.torch_input(
                np.zeros((batch, 224, 224, 3), np.float32))), runs)
    print(json.dumps({"rows": rows, "total_ms": total, "threads": machine.thread_report()}))


# ---------------------------------------------------------------------------------------------
# driver

def run(python, *argv):
    env = machine.peer_env(extra={"PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPTS)])})
    done = subprocess.run([python, __file__, *argv], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"{' '.join(argv)} failed:\n{done.stderr[-1500:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def pool_names(rows):
    """tlkit's pooling layer names in order (torch's pools are numbered; they pair up by position)."""
    return [n for n in rows if "pool" in n]


def table(model_name, batch, task, tl, tc):
    flops = dict(peer_models.conv_shapes(model_name))
    grad = lambda n: 2 if n == "block5_conv1" else 3  # noqa: E731 - forward + weight (+ input) gradient
    scale = lambda n: grad(n) if task == "finetune" and n.startswith("block5") else 1  # noqa: E731
    torch_rows = dict(tc["rows"]) if tc else {}
    if tc:  # torch numbers its pools; give them tlkit's names
        for i, name in enumerate(pool_names(tl["rows"])):
            torch_rows[name] = torch_rows.pop(f"pool{i}", None)
    head = "| layer | tlkit ms | tlkit GFLOP/s | torch ms | torch GFLOP/s |\n|---|---:|---:|---:|---:|"
    lines, fire_sum = [head], {}
    rate = lambda f, ms: f"{f / ms / 1e6:.0f}" if f and ms else ""  # noqa: E731
    for name, ms in tl["rows"].items():
        f = flops.get(name, 0) * batch * scale(name)
        t = torch_rows.get(name)
        lines.append(f"| {name} | {ms:.1f} | {rate(f, ms)} | {'' if t is None else f'{t:.1f}'} | {rate(f, t)} |")
        if "/" in name:
            fire = name.split("/")[0]
            fire_sum[fire] = fire_sum.get(fire, 0.0) + ms
            if name.endswith("concat"):
                ff = sum(v for k, v in flops.items() if k.startswith(fire + "/")) * batch
                t = torch_rows.get(f"{fire} (block)")
                lines.append(f"| **{fire} (block)** | {fire_sum[fire]:.1f} | {rate(ff, fire_sum[fire])} | "
                             f"{'' if t is None else f'{t:.1f}'} | {rate(ff, t)} |")
    total_f = sum(f * scale(n) for n, f in flops.items()) * batch
    lines.append(f"| sum of layers alone | {sum(tl['rows'].values()):.1f} | {rate(total_f, sum(tl['rows'].values()))} | "
                 + (f"{sum(v for k, v in torch_rows.items() if v and '/' not in k):.1f} |  |" if tc else " |  |"))
    if tl.get("total_ms"):
        tt = tc.get("total_ms") if tc else None
        lines.append(f"| whole model (fused) | {tl['total_ms']:.1f} | {rate(total_f, tl['total_ms'])} | "
                     f"{'' if tt is None else f'{tt:.1f}'} | {rate(total_f, tt)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=("vgg16", "squeezenet"), default=["vgg16", "squeezenet"])
    p.add_argument("--batch", type=int, help="default: 8 for VGG16, 32 for SqueezeNet")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-step", action="store_true", help="skip the VGG16 block5 training step")
    p.add_argument("--peer-python", default=PEER_PYTHON)
    p.add_argument("--write", action="store_true", help="also rewrite BENCHMARKS.md's '## Where the time goes' section")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        framework, model_name, batch, runs, task = args.worker
        fn = tlkit_worker if framework == "tlkit" else torch_worker
        return fn(model_name, int(batch), int(runs), task)
    with_torch = not args.no_torch and os.path.exists(args.peer_python)
    load_before = machine.loadavg()
    sections = []
    jobs = [(m, "forward") for m in args.models]
    if "vgg16" in args.models and not args.no_step:
        jobs.append(("vgg16", "finetune"))
    for model_name, task in jobs:
        batch = args.batch or (8 if model_name == "vgg16" else 32)
        tl = run(sys.executable, "--worker", "tlkit", model_name, str(batch), str(args.runs), task)
        tc = run(args.peer_python, "--worker", "torch", model_name, str(batch), str(args.runs), task) \
            if with_torch else None
        if tl is None:
            continue
        what = "forward" if task == "forward" else "block5 fine-tuning step (block5: forward + backward)"
        sections.append(f"### {model_name} {what}, batch {batch}\n\n{table(model_name, batch, task, tl, tc)}")
    sections.insert(0, f"{machine.header(load_before=load_before)}; best of {args.runs} calls per layer after a warm-up.")
    machine.publish("## Where the time goes", "\n\n".join(sections) + "\n", args.write)


if __name__ == "__main__":
    main()
