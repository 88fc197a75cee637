"""Acceptance on real data: `tlkit finetune` per base against the equivalent Keras program, side by side.

    python scripts/acceptance_finetune.py                      # both datasets, both bases, table on stdout
    python scripts/acceptance_finetune.py --datasets hymenoptera --epochs 3
    python scripts/acceptance_finetune.py --bases efficientnet_lite0 --peer-python none
    python scripts/acceptance_finetune.py --write              # also rewrite '## Fine-tuning' in BENCHMARKS.md
    python scripts/acceptance_finetune.py --peer-python none --geometric-epochs 0 --fine-tune-epochs 0 \
        --section "## Bases on the real folders (issue 20)" --write   # the bases table only (~10 min, quiet)

Each base with real ImageNet weights (SqueezeNet v1.1 from ../shared/data/weights, EfficientNet-Lite0
from its installed package, VGG16 from tlkit's download cache), frozen, a
global-average-pool + dense head, augmentation on (tlkit's default preset, horizontal flips; the
Keras program spells out the same), batch 32, 224x224. Each row gives the whole command's wall
time, the CPU seconds it used (children's user + system) and the load average around it: under
load the wall time grows, the CPU seconds much less, the accuracy not at all. Keras runs SqueezeNet only. With flips only, tlkit computes the base's
outputs for each image and its mirror once; so a second flowers run (--geometric-epochs) adds
rotation, shifts and zoom on both sides, where the base must run on every image every epoch. Runs one after the other in this one run (never at the
same time: 2 cores), each in its own process; the peer with --peer-python (default
/work/peers/bin/python, which has TensorFlow and tf_keras). Flowers also gets a second,
fine-tuning stage in tlkit (top fire modules unfrozen) to show it improves on the frozen base.
"""
import argparse
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(os.environ.get("TLKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
WEIGHTS = DATA / "weights" / "squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5"
DATASETS = {"hymenoptera": DATA / "datasets" / "hymenoptera_data", "flowers": DATA / "datasets" / "flowers"}
BARS = {"hymenoptera": 0.88, "flowers": 0.72}
BASE_WEIGHTS = {"squeezenet": str(WEIGHTS), "efficientnet_lite0": "imagenet", "vgg16": "imagenet"}
# --fine-tune-layers for flowers' second stage: SqueezeNet's top two fire modules; for the others the
# same count of weighted layers from the top.
FINE_TUNE_LAYERS = 6


def run_tlkit(data, out, epochs, base="squeezenet", extra=()):
    """(report.json, wall seconds, CPU seconds) of one `tlkit finetune` in its own process."""
    cmd = [sys.executable, "-m", "tlkit.cli", "finetune", str(data), "--base", base, "--weights",
           BASE_WEIGHTS[base], "--epochs", str(epochs), "--batch-size", "32", "--image-size", "224", "--out",
           str(out), "--verbose", "2", *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    before, t0 = os.times(), time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    wall, after = time.perf_counter() - t0, os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return json.loads((out / "report.json").read_text()), wall, cpu


def run_keras(peer_python, data, epochs, workdir, geometric=False):
    result = workdir / "keras.json"
    cmd = [peer_python, str(REPO / "scripts" / "keras_finetune.py"), str(data), "--weights", str(WEIGHTS),
           "--epochs", str(epochs), "--json", str(result)] + (["--geometric"] if geometric else [])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return json.loads(result.read_text()), time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    p.add_argument("--bases", nargs="+", choices=sorted(BASE_WEIGHTS), default=["squeezenet", "efficientnet_lite0"],
                   help="vgg16 needs its ImageNet file in tlkit's download cache (or a network)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--fine-tune-epochs", type=int, default=3)
    p.add_argument("--geometric-epochs", type=int, default=3,
                   help="also time flowers with rotation/shift/zoom on (the base runs every epoch); 0: skip")
    p.add_argument("--peer-python", default="/work/peers/bin/python", help="'none': no Keras runs")
    p.add_argument("--write", action="store_true", help="rewrite --section of BENCHMARKS.md")
    p.add_argument("--section", default="## Fine-tuning acceptance", help="the BENCHMARKS.md heading --write rewrites")
    args = p.parse_args()
    if not DATA.is_dir():
        sys.exit(f"The real data folder {DATA} is absent (set TLKIT_SHARED_DATA).")
    sys.path.insert(0, str(REPO / "scripts"))
    import machine

    sys.path.insert(0, str(REPO))
    from tlkit.apps.models import offline_weights

    bases = [b for b in args.bases if BASE_WEIGHTS[b] != "imagenet" or offline_weights(b)]
    for base in sorted(set(args.bases) - set(bases)):
        print(f"{base}: skipped, its ImageNet weights are neither cached nor installed (see `tlkit models`)")
    runs = [(base, name, False, args.epochs) for base in bases for name in args.datasets]
    if "flowers" in args.datasets and args.geometric_epochs:
        runs += [(base, "flowers", True, args.geometric_epochs) for base in bases]
    rows, load_before = [], machine.loadavg()
    for base, name, geometric, epochs in runs:
        data = DATASETS[name]
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            # Flowers also gets a second, fine-tuning stage in the same run (top weighted layers unfrozen).
            fine_tune = name == "flowers" and args.fine_tune_epochs and not geometric
            extra = ["--fine-tune-layers", str(FINE_TUNE_LAYERS), "--fine-tune-epochs", str(args.fine_tune_epochs),
                     "--fine-tune-lr", "1e-4"] if fine_tune else []
            extra += ["--rotation", "15", "--shift", "0.1", "--zoom", "0.1"] if geometric else []
            load = machine.loadavg()
            rep, wall, cpu = run_tlkit(data, tmp / "run", epochs, base, extra)
            history = _read_history(tmp / "run" / "history.csv")
            stage1 = [v for v, st in zip(history["val_accuracy"], history["stage"]) if st == 1]
            row = {"base": base, "dataset": name,
                   "augmentation": "flips, rotation, shifts, zoom" if geometric else "flips",
                   "epochs": epochs, "tlkit_val_accuracy": stage1[-1], "tlkit_best_val_accuracy": max(stage1),
                   "tlkit_epoch_seconds": rep["timings"]["stage1_seconds"] / rep["timings"]["stage1_epochs"],
                   "tlkit_wall_seconds": wall, "tlkit_cpu_seconds": cpu,
                   "load": f"{load.split()[0]}-{machine.loadavg().split()[0]}",
                   "train_images": rep["train_images"], "val_images": rep["val_images"],
                   "skipped": len(rep["skipped_images"])}
            if fine_tune:
                row["tlkit_after_fine_tuning"] = rep["accuracy"]
            if base == "squeezenet" and os.path.exists(args.peer_python):
                k, keras_wall = run_keras(args.peer_python, data, epochs, tmp, geometric)
                row["keras_wall_seconds"] = keras_wall
                row["whole_job_speedup"] = keras_wall / wall
                row["keras_val_accuracy"] = k["val_accuracy"][-1]
                row["keras_epoch_seconds"] = sum(k["epoch_seconds"]) / len(k["epoch_seconds"])
                row["epoch_time_ratio"] = row["tlkit_epoch_seconds"] / row["keras_epoch_seconds"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = format_table(rows)
    header = machine.header(load_before=load_before)
    print(header)
    print(table)
    if args.write:
        command = "python scripts/acceptance_finetune.py " + " ".join(
            shlex.quote(a) for a in sys.argv[1:] if a != "--write")
        write_section(args.section, f"Command: `{command.strip()}`\n\n{header}\n\n{table}\n")


def _read_history(path):
    import csv

    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows if r.get(k) not in (None, "")] for k in rows[0]}


def format_table(rows):
    lines = ["| base | dataset | augmentation | epochs | bar | tlkit val acc (last / best) | Keras val acc (last) | "
             "tlkit s/epoch | Keras s/epoch | tlkit/Keras time | after fine-tuning | tlkit wall s (whole run) | "
             "tlkit CPU s | Keras wall s (whole run) | whole job: Keras wall / tlkit wall | load (1-min, before-after) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        after = f"{r['tlkit_after_fine_tuning']:.3f}" if "tlkit_after_fine_tuning" in r else "-"
        lines.append(
            f"| {r['base']} | {r['dataset']} ({r['train_images']} train / {r['val_images']} val) | {r['augmentation']} | "
            f"{r['epochs']} | "
            f"{BARS[r['dataset']]:.2f} | {r['tlkit_val_accuracy']:.3f} / {r['tlkit_best_val_accuracy']:.3f} | "
            f"{_cell(r, 'keras_val_accuracy', 3)} | {r['tlkit_epoch_seconds']:.1f} | "
            f"{_cell(r, 'keras_epoch_seconds', 1)} | {_cell(r, 'epoch_time_ratio', 2)} | "
            f"{after} | {r['tlkit_wall_seconds']:.0f} | {r['tlkit_cpu_seconds']:.0f} | "
            f"{_cell(r, 'keras_wall_seconds', 0)} | {_cell(r, 'whole_job_speedup', 2)} | {r['load']} |")
    return "\n".join(lines)


def _cell(row, key, digits):
    return f"{row[key]:.{digits}f}" if key in row else "-"


def write_section(heading, body):
    """Replace (or append) one '## ' section of BENCHMARKS.md, leaving the others alone."""
    path = REPO / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(heading + "\n")
    section = f"{heading}\n\n{body}"
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
