"""Stage 2 of `tlkit finetune`: does any augmentation policy beat flips alone? (run through
``python scripts/augment_presets.py --stage2``).

Per dataset and seed, stage 1 runs once exactly as `tlkit finetune` does it (SqueezeNet with its
real ImageNet weights, default head, flips, cached base outputs; ``--stage1-epochs``). Every
policy then starts stage 2 from the same stage-1 weights: the top fire module unfrozen (3 conv
layers), Adam at finetune's default 1e-5 (or ``--stage2-lr``), ``--stage2-epochs`` epochs on batches of the policy's
Pipeline (flips first, on the one fused warp), caffe preprocessing; scored on the un-augmented
validation images. Accuracy does not depend on the machine's load; the wall time does.
"""
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(os.environ.get("TLKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
WEIGHTS = DATA / "weights" / "squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5"
DATASETS = {"hymenoptera": (DATA / "datasets" / "hymenoptera_data", 224),
            "flowers": (DATA / "datasets" / "flowers", 128)}  # flowers' photos are 128x128


def policies(num_classes):
    from tlkit import augment as A

    return {"flips (default)": [], "flips + RandAugment(2, 9)": [A.RandAugment()],
            "flips + TrivialAugmentWide": [A.TrivialAugmentWide()], "flips + AugMix(3, 3)": [A.AugMix()],
            "flips + CutMix(1.0)": [A.CutMix(1.0, num_classes)], "flips + MixUp(0.2)": [A.MixUp(0.2, num_classes)]}


def stage1(folder, size, seed, epochs, out):
    from tlkit.apps import finetune

    config = finetune.FinetuneConfig(str(folder), base="squeezenet", weights=str(WEIGHTS), image_size=size,
                                     epochs=epochs, seed=seed, out=out, verbose=0)
    finetune.run(config)
    return config


def stage2(config, layout, transforms, seed, epochs, lr):
    from tlkit.apps import finetune
    from tlkit.apps.features import Preprocessed
    from tlkit.apps.head import build_head
    from tlkit.augment import Pipeline, RandomFlip
    from tlkit.engine.layers.input_layer import Input
    from tlkit.engine.model import Model
    from tlkit.utils.random import set_random_seed

    set_random_seed(seed)
    base = finetune.build_base(config)
    head = build_head(base.output_shape[1:], len(layout["classes"]), config.head)
    inp = Input((config.image_size, config.image_size, 3), name="image")
    full = Model(inp, head(base(inp)))
    full.load_weights(os.path.join(config.out, "stage1.h5"))
    finetune.unfreeze_top(base, 3)
    full.compile(finetune.make_optimizer("adam", lr or config.fine_tune_lr), "categorical_crossentropy", ["accuracy"])
    split = config.val_split if layout["val"] is None else 0.0
    common = dict(target_size=(config.image_size,) * 2, classes=layout["classes"], class_mode="categorical",
                  batch_size=config.batch_size, verbose=0)
    train = Pipeline([RandomFlip("horizontal")] + transforms, validation_split=split).flow_from_directory(
        layout["train"], shuffle=True, seed=seed, subset="training" if split else None, **common)
    plain = Pipeline([], validation_split=split)
    val = plain.flow_from_directory(layout["val"] or layout["train"], shuffle=False,
                                    subset="validation" if split else None, **common)
    t0 = time.time()
    full.fit(Preprocessed(train, "caffe"), steps_per_epoch=len(train), epochs=epochs, verbose=0)
    seconds = (time.time() - t0) / epochs
    _, acc = full.evaluate(Preprocessed(val, "caffe"), steps=len(val), verbose=0)
    train.close(), val.close()
    return float(acc), seconds


def main(args):
    from tlkit.apps.dataset import find_layout

    if not WEIGHTS.is_file():
        sys.exit(f"The real data folder {DATA} is absent (set TLKIT_SHARED_DATA).")
    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if l.startswith("Model name")), platform.processor())
    load_before = os.getloadavg()
    sections = []
    for name in args.datasets.split(","):
        folder, size = DATASETS[name]
        layout = find_layout(str(folder))
        table = policies(len(layout["classes"]))
        chosen = table if not args.policies else {k: v for k, v in table.items()
                                                  if k == "flips (default)" or any(p in k for p in
                                                                                  args.policies.split(","))}
        results = {k: [] for k in chosen}
        times = {k: [] for k in chosen}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            with tempfile.TemporaryDirectory() as out:
                config = stage1(folder, size, seed, args.stage1_epochs, out)
                for policy, transforms in chosen.items():
                    acc, sec = stage2(config, layout, transforms, seed, args.stage2_epochs, args.stage2_lr)
                    results[policy].append(acc)
                    times[policy].append(sec)
                    print(f"{name} seed {seed} {policy}: val acc {acc:.3f} ({sec:.0f} s/epoch)", flush=True)
        lr = args.stage2_lr or config.fine_tune_lr
        lines = [f"{name} ({size}x{size}): val accuracy after {args.stage1_epochs} stage-1 + {args.stage2_epochs} "
                 f"stage-2 epochs (stage-2 learning rate {lr:g})", "", "| stage-2 augmentation | per seed | mean | vs flips | s/epoch (loaded) |",
                 "|---|---|---:|---:|---:|"]
        flips = np.mean(results["flips (default)"])
        for policy in chosen:
            accs = results[policy]
            lines.append(f"| {policy} | {' '.join(f'{a:.3f}' for a in accs)} | {np.mean(accs):.3f} | "
                         f"{np.mean(accs) - flips:+.3f} | {np.median(times[policy]):.0f} |")
        sections.append("\n".join(lines))
        print(sections[-1], flush=True)
    load_after = os.getloadavg()
    text = "\n\n".join(sections)
    print(text)
    if args.write:
        from acceptance_finetune import write_section

        command = "python scripts/augment_presets.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
        write_section("## Augmentation policies for fine-tuning (stage 2)",
                      f"Command: `{command.strip()}`. CPU: {cpu}; load average before "
                      f"{' '.join(f'{v:.2f}' for v in load_before)}, after {' '.join(f'{v:.2f}' for v in load_after)} "
                      f"(accuracy does not depend on the load; the seconds per epoch do).\n\n{text}\n")
