"""Which augmentation suits `tlkit finetune`? Stage 1 (frozen base) presets, and stage 2 policies.

    python scripts/augment_presets.py                 # flowers, 4 augmented passes, seeds 0-4 (~20 min)
    python scripts/augment_presets.py --passes 2 --seeds 2 --write   # also rewrite its BENCHMARKS.md section
    python scripts/augment_presets.py --stage2 --seeds 2 --write     # stage 2: policies vs flips (augment_stage2.py)

For each preset, the frozen SqueezeNet base (real ImageNet weights) pools its outputs for
``--passes`` augmented copies of the flowers training split (val split 0.2, 224x224); the default
head (gap, bn, dense 256, dropout 0.5; Adam 1e-3, batch 32) then trains 10 epochs, epoch e on copy
e % passes, exactly what `tlkit finetune` would feed it, and is scored on the un-augmented
validation split. Repeated over seeds because one run's last epoch moves by a point or two.
"""
import argparse
import os
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = pathlib.Path(os.environ.get("TLKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
WEIGHTS = DATA / "weights" / "squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5"
FLOWERS = DATA / "datasets" / "flowers"
PRESETS = {
    "none": {},
    "flips (tlkit's default)": {"horizontal_flip": True},
    "flips, rotation 10, zoom 0.1, reflect": {"horizontal_flip": True, "rotation_range": 10, "zoom_range": 0.1,
                                               "fill_mode": "reflect"},
    "flips, rotation 15, shifts 0.1, zoom 0.1": {"horizontal_flip": True, "rotation_range": 15,
                                                  "width_shift_range": 0.1, "height_shift_range": 0.1,
                                                  "zoom_range": 0.1},
}


def pooled_features(base, augmentation, subset, passes):
    from tlkit.augment import ImageDataGenerator
    from tlkit.zoo.preprocessing import preprocess_input

    it = ImageDataGenerator(validation_split=0.2, **augmentation).flow_from_directory(
        FLOWERS, target_size=(224, 224), batch_size=32, shuffle=False, subset=subset, class_mode="sparse",
        seed=1, verbose=0)
    copies = []
    for _ in range(passes):
        feats, labels = [], []
        for i in range(len(it)):
            x, y = it[i]
            feats.append(base.predict_on_batch(preprocess_input(x, "caffe", inplace=True)).mean(axis=(1, 2)))
            labels.append(y.astype(int))
        it.on_epoch_end()
        copies.append((np.concatenate(feats), np.concatenate(labels)))
    return copies


def train_head(copies, val, seed, epochs=10):
    from tlkit.apps.finetune import make_optimizer
    from tlkit.apps.head import build_head
    from tlkit.utils.random import set_random_seed

    set_random_seed(seed)
    head = build_head((1, 1, copies[0][0].shape[1]), 5, "gap,bn,dense:256,dropout:0.5")
    head.compile(make_optimizer("adam", 1e-3), "categorical_crossentropy", ["accuracy"])
    for e in range(epochs):
        x, y = copies[e % len(copies)]
        head.fit(x[:, None, None, :], np.eye(5)[y], batch_size=32, epochs=1, shuffle=True, verbose=0)
    xv, yv = val
    return float((head.predict(xv[:, None, None, :], verbose=0).argmax(1) == yv).mean())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--passes", type=int, default=4)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--write", action="store_true")
    p.add_argument("--stage2", action="store_true", help="compare policies for stage 2 instead (augment_stage2.py)")
    p.add_argument("--stage1-epochs", type=int, default=5)
    p.add_argument("--stage2-epochs", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="stage 2: seeds first-seed .. first-seed + seeds - 1")
    p.add_argument("--stage2-lr", type=float, default=None, help="default: finetune's --fine-tune-lr default")
    p.add_argument("--datasets", default="hymenoptera,flowers")
    p.add_argument("--policies", default=None, help="comma-separated subset of the stage-2 policies")
    args = p.parse_args()
    if args.stage2:
        from augment_stage2 import main as stage2

        return stage2(args)
    if not FLOWERS.is_dir():
        sys.exit(f"The real data folder {DATA} is absent (set TLKIT_SHARED_DATA).")
    from tlkit.zoo import SqueezeNet

    base = SqueezeNet(include_top=False, weights=str(WEIGHTS), input_shape=(224, 224, 3))
    val = pooled_features(base, {}, "validation", 1)[0]
    lines = ["| augmentation | val accuracy after 10 epochs, per seed | mean |", "|---|---|---:|"]
    for name, augmentation in PRESETS.items():
        copies = pooled_features(base, augmentation, "training", 1 if not augmentation else args.passes)
        accs = [train_head(copies, val, seed) for seed in range(args.seeds)]
        lines.append(f"| {name} | {' '.join(f'{a:.3f}' for a in accs)} | {np.mean(accs):.3f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    if args.write:
        from acceptance_finetune import write_section

        command = "python scripts/augment_presets.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
        write_section("## Augmentation presets on a frozen base",
                      f"Command: `{command.strip()}` (flowers, SqueezeNet frozen, default head)\n\n{table}\n")


if __name__ == "__main__":
    main()
