"""tlkit finetune: a frozen ImageNet base + a new head trained on an image folder, end to end.

Stage 1 trains the head on the frozen base. Base outputs for images that aren't augmented
(validation always, training too with --no-augment) are computed once and reused, so later
epochs cost a small fraction of the first. Stage 2 (optional) unfreezes the top of the base
and trains on with a low learning rate. Every epoch is backed up atomically, so a killed run
continues with --resume and its history holds each completed epoch exactly once.
"""
import csv
import dataclasses
import io
import json
import os
import shutil
import time

import numpy as np

from tlkit.apps import report as report_mod
from tlkit.apps import run_report
from tlkit.apps.dataset import DataFolderError, find_layout
from tlkit.apps.features import CachedVariants, Preprocessed, compute_features, flip_variants
from tlkit.apps.head import build_head, parse_head
from tlkit.apps.models import BASES
from tlkit.apps.options import check_config
from tlkit.apps.plots import plot_confusion, plot_curves, plot_misclassified
from tlkit.apps.run_dir import RunDirError, prepare as prepare_run_dir  # noqa: F401 (kept importable from here)
from tlkit.apps.run_dir import epoch_sync, finite_guard, open_run, require_finite_weights, save_state
from tlkit.apps.warmup import warm_up
from tlkit.augment.options import generator_arguments
from tlkit.utils.io import atomic_write_text


@dataclasses.dataclass
class FinetuneConfig:
    data_dir: str
    base: str = "vgg16"
    weights: str = "imagenet"
    image_size: int = 224
    batch_size: int = 32
    epochs: int = 10
    augment: bool = True
    # Flips only by default: measured on a frozen base, rotation/shift/zoom cost accuracy (BENCHMARKS.md),
    # and flips have two outcomes whose base outputs can be cached.
    rotation: float = 0.0
    shift: float = 0.0
    zoom: float = 0.0
    shear: float = 0.0
    flip: str = "horizontal"
    brightness: tuple = None
    fill_mode: str = "nearest"
    val_split: float = 0.2
    head: str = "gap,bn,dense:256,dropout:0.5"  # bn: the base's pooled outputs reach the hundreds
    optimizer: str = "adam"
    lr: float = 1e-3
    fine_tune_layers: int = 0
    fine_tune_from: str = None
    fine_tune_epochs: int = 0
    fine_tune_lr: float = 1e-5
    early_stopping: int = None
    class_weight: str = None
    seed: int = 0
    workers: int = 2
    out: str = "runs/finetune"
    resume: bool = False
    verbose: int = 1

    def settings(self):
        """What defines the run (everything but where and how it is run)."""
        d = dataclasses.asdict(self)
        for key in ("out", "resume", "verbose", "workers"):
            d.pop(key)
        d["data_dir"] = os.path.abspath(self.data_dir)
        if d["brightness"] is not None:
            d["brightness"] = list(d["brightness"])
        return d


def _say(config, text):
    if config.verbose:
        print(text, flush=True)


# ----- data -----
def _augmentation(config):
    if not config.augment:
        return {}
    return generator_arguments(config.rotation, config.shift, config.zoom, config.shear, config.flip,
                               config.brightness, config.fill_mode)


def make_iterators(config, layout):
    from tlkit.augment import ImageDataGenerator

    split = config.val_split if layout["val"] is None else 0.0
    size = (config.image_size, config.image_size)
    common = dict(target_size=size, classes=layout["classes"], class_mode="categorical",
                  batch_size=config.batch_size, seed=config.seed, workers=config.workers,
                  verbose=1 if config.verbose else 0)
    train_gen = ImageDataGenerator(validation_split=split, **_augmentation(config))
    plain_gen = ImageDataGenerator(validation_split=split)
    train = train_gen.flow_from_directory(layout["train"], shuffle=True, subset="training" if split else None,
                                          **common)
    # The same images again, unshuffled: "Found N images" was already said for them.
    train_plain = plain_gen.flow_from_directory(layout["train"], shuffle=False,
                                                subset="training" if split else None, **{**common, "verbose": 0})
    if layout["val"] is not None:
        val = plain_gen.flow_from_directory(layout["val"], shuffle=False, **common)
    elif split:
        val = plain_gen.flow_from_directory(layout["train"], shuffle=False, subset="validation", **common)
    else:
        val = None
    return train, train_plain, val


# ----- models -----
def build_base(config):
    from tlkit.zoo import SqueezeNet, VGG16

    if config.base not in BASES:
        raise ValueError(f"Unknown --base {config.base!r}; choose one of {', '.join(BASES)}.")
    factory = VGG16 if config.base == "vgg16" else SqueezeNet
    weights = None if config.weights in (None, "none") else config.weights
    base = factory(include_top=False, weights=weights, input_shape=(config.image_size, config.image_size, 3))
    base.trainable = False
    return base


def make_optimizer(name, lr):
    from tlkit.engine import optimizers

    opt = optimizers.get(name)
    opt.learning_rate = lr
    return opt


def balanced_class_weight(labels, num_classes):
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return {i: float(len(labels) / (num_classes * c)) if c else 1.0 for i, c in enumerate(counts)}


# ----- callbacks that keep the run folder current -----
def _run_callbacks(config, full_model, stage, prior_history, metadata, monitor):
    from tlkit.engine.callbacks import Callback

    out = config.out

    class RunFolderWriter(Callback):
        """After each epoch: history.csv (rewritten from the restored History: each epoch once),
        curves.png, and the best full model so far."""

        def on_train_begin(self, logs=None):
            self.best = -np.inf

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            # Epochs before this one (restored by BackupAndRestore on --resume) plus this one's logs,
            # whether or not History has already appended them: each epoch exactly once.
            past = self.model.history.history if self.model.history is not None else {}
            current = {k: list(v)[:epoch] for k, v in past.items()}
            for k, v in logs.items():
                current.setdefault(k, [None] * epoch).append(v)
            combined = combine_histories(prior_history, current, stage)
            if self.best == -np.inf:  # the best of the whole run before this epoch (stage 1 included)
                vals = [v for v in combined.get(monitor, [])[:-1] if v is not None and np.isfinite(v)]
                self.best = max(vals, default=-np.inf)
            write_history_csv(os.path.join(out, "history.csv"), combined)
            plot_curves(combined, os.path.join(out, "curves.png"))
            value = logs.get(monitor)
            if value is not None and np.isfinite(value) and value > self.best:
                self.best = value
                full_model.save(os.path.join(out, "best.h5"), metadata=metadata)

    return [RunFolderWriter()]


def combine_histories(prior, current, stage):
    combined = {k: list(v) for k, v in (prior or {}).items()}
    n_prior = len(next(iter(prior.values()))) if prior else 0
    n_cur = len(next(iter(current.values()))) if current else 0
    for key in set(combined) | set(current):
        combined.setdefault(key, [None] * n_prior)
        combined[key] = combined[key][:n_prior] + list(current.get(key, [None] * n_cur))
    combined["stage"] = list((prior or {}).get("stage", [])) + [stage] * n_cur
    return combined


def write_history_csv(path, history):
    keys = ["stage"] + sorted(k for k in history if k != "stage")
    n = len(history.get("stage", []))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch"] + keys)
    for i in range(n):
        row = [i + 1]  # epochs count from 1, as on the console and in the report
        for k in keys:
            values = history.get(k, [])
            v = values[i] if i < len(values) else None
            row.append("" if v is None else v)
        writer.writerow(row)
    atomic_write_text(path, buf.getvalue())


# ----- the run -----
def run(config):
    """Train, evaluate and write everything into ``config.out``; returns the report dict."""
    check_config(config)  # every option, before any work
    layout = find_layout(config.data_dir)
    with open_run(config, layout["classes"], say=lambda text: _say(config, text)) as state:
        return _train_and_report(config, layout, state)


def _train_and_report(config, layout, state):
    from tlkit.engine import callbacks as cb
    from tlkit.engine.layers.input_layer import Input
    from tlkit.engine.model import Model
    from tlkit.engine.sequential import Sequential
    from tlkit.utils.random import set_random_seed

    set_random_seed(config.seed)
    out = config.out
    classes = layout["classes"]
    atomic_write_text(os.path.join(out, "classes.json"), json.dumps(classes, indent=2))

    t0 = time.time()
    base = build_base(config)
    mode = getattr(base, "preprocessing", "caffe")
    # Every model file of the run (best.h5, stage1.h5, model.h5) can be used by predict and evaluate.
    metadata = {"classes": classes, "image_size": config.image_size, "preprocessing": mode, "base": config.base,
                "weights": str(config.weights), "settings": config.settings()}
    _say(config, f"Scanning {config.data_dir}")
    train_it, train_plain, val_it = make_iterators(config, layout)
    if train_it.samples == 0:
        raise DataFolderError(f"No readable training images in {layout['train']}.")
    feature_shape = base.output_shape[1:]
    head = build_head(feature_shape, len(classes), config.head)
    inp = Input((config.image_size, config.image_size, 3), name="image")
    full = Model(inp, head(base(inp)), name=f"{config.base}_finetuned")
    class_weight = balanced_class_weight(train_it.classes, len(classes)) if config.class_weight == "auto" else None
    timings = state.setdefault("timings", {})
    gradient_warnings = state.setdefault("gradient_warnings", [])  # kept in run.json across --resume
    monitor = run_report.monitored(val_it is not None)
    stopper = None
    warm_up(base, lambda text: _say(config, text))

    # Stage 1: the head on the frozen base.
    if not state["stage1_done"]:
        t_stage = time.time()
        _say(config, f"\nStage 1: training the head on the frozen {config.base} base ({config.epochs} epochs, "
                     f"learning rate {config.lr:g})")
        flips = flip_variants(config)
        # Cached outputs go through a head starting with global pooling already pooled: the
        # head's other layers (shared with it) train on them.
        first = parse_head(config.head)[0][0]
        pool = first if first in ("gap", "gmp") and flips is not None else None
        trained = Sequential([Input(feature_shape[-1:])] + head.layers[1:], name="head_on_pooled") if pool \
            else head
        val_data = None
        if val_it is not None:
            (val_x,), val_y = compute_features(base, val_it, mode, "validation", config.verbose, pool=pool)
            val_data = (val_x, val_y)
        trained.compile(make_optimizer(config.optimizer, config.lr), "categorical_crossentropy", ["accuracy"])
        # The backup stays until the run is finished: stage 1 is not done before stage1.h5 and run.json say so.
        callbacks = [cb.BackupAndRestore(os.path.join(out, "backup", "stage1"), delete_checkpoint=False),
                     finite_guard(config.lr)]
        callbacks += run_report.monitoring_callbacks(gradient_warnings, lambda text: _say(config, text))
        callbacks += _run_callbacks(config, full, 1, None, metadata, monitor)
        if config.early_stopping:
            stopper = cb.EarlyStopping(monitor=monitor, patience=config.early_stopping, restore_best_weights=True)
            callbacks.append(stopper)
        if flips is None:  # the augmentation changes the pictures: the base runs on them every epoch
            x, steps, y = Preprocessed(train_it, mode, base), len(train_it), None
        else:
            variants, y = compute_features(base, train_plain, mode, "training", config.verbose, flips, pool)
            x, steps = variants[0], None
            if len(variants) > 1:
                x, y, steps = CachedVariants(variants, y, config.batch_size, config.seed), None, None
        if y is None:  # batches drawn per epoch: a resumed run must draw those of its epoch
            callbacks.insert(1, epoch_sync(x.source if isinstance(x, Preprocessed) else x))
        history = trained.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, steps_per_epoch=steps,
                              validation_data=val_data, class_weight=class_weight, callbacks=callbacks,
                              verbose=config.verbose)
        timings["stage1_seconds"] = timings.get("stage1_seconds", 0) + time.time() - t_stage
        timings["stage1_epochs"] = len(history.history.get("loss", []))
        state["stage1_history"] = combine_histories(None, history.history, 1)
        state["stage1_done"] = True
        require_finite_weights(full, "stage 1")
        full.save(os.path.join(out, "stage1.h5"), metadata=metadata)
        save_state(out, state)
    else:
        full.load_weights(os.path.join(out, "stage1.h5"))

    # Stage 2: unfreeze the top of the base and train on slowly.
    history_all = state["stage1_history"]
    stage_first_epoch, unfrozen = 1, None
    if config.fine_tune_epochs:
        t_stage = time.time()
        unfrozen = unfreeze_top(base, config.fine_tune_layers, config.fine_tune_from)
        stage_first_epoch = len(state["stage1_history"].get("stage", [])) + 1
        _say(config, f"\nStage 2 (from epoch {stage_first_epoch}): unfreezing {len(unfrozen)} layers from "
                     f"{unfrozen[0]} ({', '.join(unfrozen)}); {config.fine_tune_epochs} epochs, learning rate "
                     f"{config.fine_tune_lr:g}")
        full.compile(make_optimizer(config.optimizer, config.fine_tune_lr), "categorical_crossentropy", ["accuracy"])
        train_images = train_it if config.augment else train_plain
        callbacks = [cb.BackupAndRestore(os.path.join(out, "backup", "stage2"), delete_checkpoint=False),
                     finite_guard(config.fine_tune_lr), epoch_sync(train_images, offset=config.epochs)]
        callbacks += run_report.monitoring_callbacks(gradient_warnings, lambda text: _say(config, text))
        callbacks += _run_callbacks(config, full, 2, state["stage1_history"], metadata, monitor)
        stopper = None
        if config.early_stopping:
            stopper = cb.EarlyStopping(monitor=monitor, patience=config.early_stopping, restore_best_weights=True)
            callbacks.append(stopper)
        val_images = Preprocessed(val_it, mode) if val_it is not None else None
        history = full.fit(Preprocessed(train_images, mode),
                           steps_per_epoch=len(train_it), epochs=config.fine_tune_epochs,
                           validation_data=val_images, validation_steps=len(val_it) if val_it else None,
                           class_weight=class_weight, callbacks=callbacks, verbose=config.verbose)
        timings["stage2_seconds"] = timings.get("stage2_seconds", 0) + time.time() - t_stage
        timings["stage2_epochs"] = len(history.history.get("loss", []))
        history_all = combine_histories(state["stage1_history"], history.history, 2)

    # Evaluation and the files people look at.
    kept = run_report.kept_weights(history_all, monitor, stopper, stage_first_epoch, config.early_stopping)
    _say(config, f"\nmodel.h5 holds the weights of epoch {kept['epoch']}: {kept['reason']}.")
    eval_it = val_it if val_it is not None else train_plain
    probs = full.predict(Preprocessed(eval_it, mode), steps=len(eval_it), verbose=0)
    y_true = np.asarray(eval_it.classes)[: len(probs)]
    y_pred = probs.argmax(axis=1)
    rep = report_mod.classification_report(y_true, y_pred, classes)
    run_report.mark_kept(history_all, kept["epoch"])
    write_history_csv(os.path.join(out, "history.csv"), history_all)
    stage2_note = f"{len(unfrozen)} layers from {unfrozen[0]}" if unfrozen else None
    plot_curves(history_all, os.path.join(out, "curves.png"), kept["epoch"], stage2_note)
    plot_confusion(np.array(rep["confusion"]), classes, os.path.join(out, "confusion.png"))
    wrong = report_mod.confidently_wrong(list(eval_it.filepaths)[: len(probs)], y_true, y_pred, probs.max(axis=1),
                                         classes)
    plot_misclassified(wrong, os.path.join(out, "misclassified.png"))
    require_finite_weights(full, "the final model")
    full.save(os.path.join(out, "model.h5"), metadata=metadata)
    best, best_value = run_report.best_epoch(history_all, monitor)
    skipped = unreadable_images(train_it, train_plain, val_it)
    failed = {p for p, _ in skipped}  # files that broke after the scan are in no batch
    n_train = train_it.samples - sum(1 for p in train_it.filepaths if p in failed)
    total = time.time() - t0
    rep.update({
        "evaluated_on": "validation" if val_it is not None else "training (no validation data)",
        "kept_weights": kept, "best": {"epoch": best, "monitor": monitor, "value": best_value},
        "best_epoch": best, "best_val_accuracy": best_value,
        "stages": run_report.stages(history_all, unfrozen),
        "most_confused": report_mod.most_confused(rep["confusion"], classes), "confidently_wrong": wrong,
        "epochs": len(history_all.get("stage", [])), "train_images": n_train,
        "val_images": val_it.samples if val_it else 0,
        "skipped_images": [{"path": str(p), "reason": str(r)} for p, r in skipped],
        "timings": timings, "images_per_second": run_report.throughput(timings, n_train),
        "monitoring": run_report.monitoring_summary(history_all, gradient_warnings),
        "wall_seconds_this_session": total, "settings": config.settings(),
    })
    atomic_write_text(os.path.join(out, "report.json"), json.dumps(rep, indent=2))
    atomic_write_text(os.path.join(out, "report.md"), run_report.report_markdown(rep, config))
    state["finished"] = True
    save_state(out, state)
    shutil.rmtree(os.path.join(out, "backup"), ignore_errors=True)  # per-epoch backups: no longer needed
    _say(config, f"\nDone. Accuracy of model.h5 (epoch {kept['epoch']}) on {rep['evaluated_on']}: "
                 f"{rep['accuracy']:.4f}. Results in {out}/ (model.h5, best.h5, report.md, curves.png, "
                 "confusion.png, misclassified.png).")
    return rep


def unreadable_images(*iterators):
    """[(path, reason)] of every file the iterators left out, at the scan or when decoding, each once
    (the subsets of a --val-split and the plain and augmented iterators read the same files)."""
    found = {}
    for it in iterators:
        for path, reason in getattr(it, "skipped", []) if it is not None else []:
            found.setdefault(path, reason)
    return list(found.items())


def unfreeze_top(base, layers=0, from_layer=None):
    """Make the top of the base trainable: its last ``layers`` layers with weights, or all from ``from_layer``."""
    names = [l.name for l in base.layers]
    if from_layer is not None:
        if from_layer not in names:
            raise ValueError(f"--fine-tune-from: the base has no layer '{from_layer}'. Its layers: {', '.join(names)}")
        cut = names.index(from_layer)
    else:
        weighted = [i for i, l in enumerate(base.layers) if l.weights]
        if layers > len(weighted):
            raise ValueError(f"--fine-tune-layers {layers}: the base has only {len(weighted)} layers with weights.")
        cut = weighted[-layers] if layers else len(names)
    base.trainable = True
    for layer in base.layers[:cut]:
        layer.trainable = False
    return [l.name for l in base.layers[cut:] if l.weights]
