"""tlkit finetune: a frozen ImageNet base + a new head trained on an image folder, end to end.

    run(config) -> _prepare -> _stage1 -> _stage2 (optional) -> _outputs

Stage 1 trains the head on the frozen base. The base's outputs are computed once and reused for
every picture that can reach it unchanged: the validation images always, and the training images
(and, with the default flip-only augmentation, their mirrors: apps/features.py) whenever the
augmentation does no more than flip. Stage 2 (optional) unfreezes the top of the base and trains on
with a low learning rate. The run folder's lifecycle (lock, identity, resume) is apps/run_dir.py;
every epoch is backed up atomically, so a killed run continues with --resume and its history holds
each completed epoch exactly once (apps/run_history.py).
"""
import dataclasses
import json
import os
import shutil
import time

import numpy as np

from tlkit.apps import report as report_mod
from tlkit.apps import run_report, warmup
from tlkit.apps.cluster_features import cluster_features
from tlkit.apps.dataset import DataFolderError, find_layout
from tlkit.apps.features import NO_FLIP, CachedVariants, Preprocessed, compute_features, flip_variants
from tlkit.apps.head import build_head, parse_head
from tlkit.apps.iterators import make_iterators
from tlkit.apps.models import build_base as build_zoo_base
from tlkit.apps.options import check_config
from tlkit.apps.plots import plot_confusion, plot_curves, plot_misclassified
from tlkit.apps.run_dir import RunDirError, prepare as prepare_run_dir  # noqa: F401 (kept importable from here)
from tlkit.apps.run_dir import epoch_sync, finite_guard, open_run, require_finite_weights, save_state
from tlkit.apps.run_history import combine_histories, write_history_csv
from tlkit.apps.run_history import run_callbacks as _run_callbacks
from tlkit.engine.layers import BatchNormalization
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
    # Flips only by default (BENCHMARKS.md: other geometry, and stage-2 policies, did not beat them); cacheable.
    rotation: float = 0.0
    shift: float = 0.0
    zoom: float = 0.0
    shear: float = 0.0
    flip: str = "horizontal"
    brightness: tuple = None
    fill_mode: str = "nearest"
    val_split: float = 0.2
    head: str = "gap,bn,dense:256,dropout:0.5"  # bn: the pooled base outputs on one scale for the dense layer
    optimizer: str = "adam"
    lr: float = 1e-3
    fine_tune_layers: int = 0
    fine_tune_from: str = None
    fine_tune_batchnorm: bool = False  # stage 2 leaves BatchNormalization frozen (inference mode) unless True
    fine_tune_epochs: int = 0
    fine_tune_lr: float = 1e-5
    early_stopping: int = None
    class_weight: str = None
    seed: int = 0
    workers: int = 2
    scheduler: str = None  # stage 1's feature cache on this Dask cluster (apps/cluster_features.py)
    cluster_workers: int = None  # ... or on a local Dask cluster of N worker processes
    out: str = "runs/finetune"
    resume: bool = False
    verbose: int = 1

    def settings(self):
        """What defines the run (everything but where and how it is run)."""
        d = dataclasses.asdict(self)
        for key in ("out", "resume", "verbose", "workers", "scheduler", "cluster_workers"):
            d.pop(key)
        d["data_dir"] = os.path.abspath(self.data_dir)
        if d["brightness"] is not None:
            d["brightness"] = list(d["brightness"])
        return d


def _say(config, text):
    if config.verbose:
        print(text, flush=True)


# ----- models -----
def build_base(config):
    weights = None if config.weights in (None, "none") else config.weights
    base = build_zoo_base(config.base, weights, (config.image_size, config.image_size, 3))
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


# ----- the run -----
def run(config):
    """Train, evaluate and write everything into ``config.out``; returns the report dict."""
    check_config(config)  # every option, before any work
    layout = find_layout(config.data_dir)
    with open_run(config, layout["classes"], say=lambda text: _say(config, text)) as state:
        return _train_and_report(config, layout, state)


@dataclasses.dataclass
class _Job:
    """What the stages of one run share: its settings, models, data and the run folder's state."""
    config: FinetuneConfig
    state: dict
    classes: list
    base: object
    mode: str
    head: object
    full: object
    metadata: dict
    train_it: object
    train_plain: object
    val_it: object
    class_weight: dict
    monitor: str
    stopper: object = None  # the early stopping of the last stage trained in this session
    unfrozen: list = None  # the layers stage 2 trains
    stage2_first_epoch: int = 1
    warming: object = None  # the BackgroundWarmUp of the base's kernels

    @property
    def out(self):
        return self.config.out

    @property
    def timings(self):
        return self.state.setdefault("timings", {})

    @property
    def gradient_warnings(self):
        return self.state.setdefault("gradient_warnings", [])  # kept in run.json across --resume

    def monitoring_callbacks(self):
        return run_report.monitoring_callbacks(self.gradient_warnings, lambda text: _say(self.config, text))


def _train_and_report(config, layout, state):
    from tlkit.utils.random import set_random_seed

    set_random_seed(config.seed)
    atomic_write_text(os.path.join(config.out, "classes.json"), json.dumps(layout["classes"], indent=2))
    t0 = time.time()
    job = _prepare(config, layout, state)
    try:
        if not state["stage1_done"]:
            _stage1(job)
        else:
            job.full.load_weights(os.path.join(job.out, "stage1.h5"))
        history_all = _stage2(job) if config.fine_tune_epochs else state["stage1_history"]
        return _outputs(job, history_all, t0)
    finally:
        job.warming.stop()


def _prepare(config, layout, state):
    """The base, the head and the full model, and the image iterators."""
    from tlkit.engine.layers.input_layer import Input
    from tlkit.engine.model import Model

    classes = layout["classes"]
    # Kernels compile (or load) while the base is built and the folders are scanned: apps/warmup.py.
    with warmup.BackgroundWarmUp(config.base, config.image_size, config.optimizer) as warming:
        base = build_base(config)
        mode = getattr(base, "preprocessing", "caffe")
        # Every model file of the run (best.h5, stage1.h5, model.h5) can be used by predict and evaluate.
        metadata = {"classes": classes, "image_size": config.image_size, "preprocessing": mode, "base": config.base,
                    "weights": str(config.weights), "settings": config.settings()}
        _say(config, f"Scanning {config.data_dir}")
        warming.start(base, lambda text: _say(config, text))
        train_it, train_plain, val_it = make_iterators(config, layout)
        warming.wait()
    if train_it.samples == 0:
        raise DataFolderError(f"No readable training images in {layout['train']}.")
    head = build_head(base.output_shape[1:], len(classes), config.head)
    inp = Input((config.image_size, config.image_size, 3), name="image")
    full = Model(inp, head(base(inp)), name=f"{config.base}_finetuned")
    class_weight = balanced_class_weight(train_it.classes, len(classes)) if config.class_weight == "auto" else None
    return _Job(config, state, classes, base, mode, head, full, metadata, train_it, train_plain, val_it,
                class_weight, run_report.monitored(val_it is not None), warming=warming)


def _early_stopping(job, callbacks):
    from tlkit.engine import callbacks as cb

    job.stopper = None
    if job.config.early_stopping:
        job.stopper = cb.EarlyStopping(monitor=job.monitor, patience=job.config.early_stopping,
                                       restore_best_weights=True)
        callbacks.append(job.stopper)


def _stage1(job):
    """The head on the frozen base, on cached base outputs where the augmentation allows."""
    from tlkit.engine import callbacks as cb
    from tlkit.engine.layers.input_layer import Input
    from tlkit.engine.sequential import Sequential

    config, base, mode = job.config, job.base, job.mode
    t_stage = time.time()
    _say(config, f"\nStage 1: training the head on the frozen {config.base} base ({config.epochs} epochs, "
                 f"learning rate {config.lr:g})")
    flips = flip_variants(config)
    # Cached outputs go through a head starting with global pooling already pooled: the
    # head's other layers (shared with it) train on them.
    first = parse_head(config.head)[0][0]
    pool = first if first in ("gap", "gmp") and flips is not None else None
    feature_shape = base.output_shape[1:]
    trained = Sequential([Input(feature_shape[-1:])] + job.head.layers[1:], name="head_on_pooled") if pool \
        else job.head
    val_data = None
    with cluster_features(config, base, mode) as cluster:
        def features(iterator, label, flips=(NO_FLIP,)):
            if cluster is not None:
                return cluster.compute(iterator, label, flips, pool)
            return compute_features(base, iterator, mode, label, config.verbose, flips, pool)

        if job.val_it is not None:
            (val_x,), val_y = features(job.val_it, "validation")
            val_data = (val_x, val_y)
        cached = features(job.train_plain, "training", flips) if flips is not None else None
    trained.compile(make_optimizer(config.optimizer, config.lr), "categorical_crossentropy", ["accuracy"])
    # The backup stays until the run is finished: stage 1 is not done before stage1.h5 and run.json say so.
    callbacks = [cb.BackupAndRestore(os.path.join(job.out, "backup", "stage1"), delete_checkpoint=False),
                 finite_guard(config.lr)]
    callbacks += job.monitoring_callbacks()
    callbacks += _run_callbacks(config, job.full, 1, None, job.metadata, job.monitor)
    _early_stopping(job, callbacks)
    if flips is None:  # the augmentation changes the pictures: the base runs on them every epoch
        x, steps, y = Preprocessed(job.train_it, mode, base), len(job.train_it), None
    else:
        variants, y = cached
        x, steps = variants[0], None
        if len(variants) > 1:
            x, y, steps = CachedVariants(variants, y, config.batch_size, config.seed), None, None
    if y is None:  # batches drawn per epoch: a resumed run must draw those of its epoch
        callbacks.insert(1, epoch_sync(x.source if isinstance(x, Preprocessed) else x))
    history = trained.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, steps_per_epoch=steps,
                          validation_data=val_data, class_weight=job.class_weight, callbacks=callbacks,
                          verbose=config.verbose)
    timings, state = job.timings, job.state
    timings["stage1_seconds"] = timings.get("stage1_seconds", 0) + time.time() - t_stage
    timings["stage1_epochs"] = len(history.history.get("loss", []))
    state["stage1_history"] = combine_histories(None, history.history, 1)
    state["stage1_done"] = True
    require_finite_weights(job.full, "stage 1")
    job.full.save(os.path.join(job.out, "stage1.h5"), metadata=job.metadata)
    save_state(job.out, state)


def _stage2(job):
    """Unfreeze the top of the base and train on slowly; returns the history of both stages."""
    from tlkit.engine import callbacks as cb

    config, state, full = job.config, job.state, job.full
    t_stage = time.time()
    job.unfrozen = unfreeze_top(job.base, config.fine_tune_layers, config.fine_tune_from,
                              config.fine_tune_batchnorm)
    job.stage2_first_epoch = len(state["stage1_history"].get("stage", [])) + 1
    _say(config, f"\nStage 2 (from epoch {job.stage2_first_epoch}): unfreezing {len(job.unfrozen)} layers from "
                 f"{job.unfrozen[0]} ({', '.join(job.unfrozen)}); {config.fine_tune_epochs} epochs, learning rate "
                 f"{config.fine_tune_lr:g}")
    full.compile(make_optimizer(config.optimizer, config.fine_tune_lr), "categorical_crossentropy", ["accuracy"])
    if not warmup.kernel_cache_present(warmup.BACKWARD_KERNELS):
        _say(config, "The first step compiles the backward kernels (once; later runs load them from the cache)...")
    train_images = job.train_it if config.augment else job.train_plain
    callbacks = [cb.BackupAndRestore(os.path.join(job.out, "backup", "stage2"), delete_checkpoint=False),
                 finite_guard(config.fine_tune_lr), epoch_sync(train_images, offset=config.epochs)]
    callbacks += job.monitoring_callbacks()
    callbacks += _run_callbacks(config, full, 2, state["stage1_history"], job.metadata, job.monitor)
    _early_stopping(job, callbacks)
    val_it = job.val_it
    val_images = Preprocessed(val_it, job.mode) if val_it is not None else None
    history = full.fit(Preprocessed(train_images, job.mode),
                       steps_per_epoch=len(job.train_it), epochs=config.fine_tune_epochs,
                       validation_data=val_images, validation_steps=len(val_it) if val_it else None,
                       class_weight=job.class_weight, callbacks=callbacks, verbose=config.verbose)
    timings = job.timings
    timings["stage2_seconds"] = timings.get("stage2_seconds", 0) + time.time() - t_stage
    timings["stage2_epochs"] = len(history.history.get("loss", []))
    return combine_histories(state["stage1_history"], history.history, 2)


def _outputs(job, history_all, t0):
    """Evaluation and the files people look at: model.h5, history.csv, the plots and the report."""
    config, out, full, classes, monitor = job.config, job.out, job.full, job.classes, job.monitor
    kept = run_report.kept_weights(history_all, monitor, job.stopper, job.stage2_first_epoch, config.early_stopping)
    _say(config, f"\nmodel.h5 holds the weights of epoch {kept['epoch']}: {kept['reason']}.")
    eval_it = job.val_it if job.val_it is not None else job.train_plain
    probs = full.predict(Preprocessed(eval_it, job.mode), steps=len(eval_it), verbose=0)
    y_true = np.asarray(eval_it.classes)[: len(probs)]
    y_pred = probs.argmax(axis=1)
    rep = report_mod.classification_report(y_true, y_pred, classes)
    run_report.mark_kept(history_all, kept["epoch"])
    write_history_csv(os.path.join(out, "history.csv"), history_all)
    unfrozen = job.unfrozen
    stage2_note = f"{len(unfrozen)} layers from {unfrozen[0]}" if unfrozen else None
    plot_curves(history_all, os.path.join(out, "curves.png"), kept["epoch"], stage2_note)
    plot_confusion(np.array(rep["confusion"]), classes, os.path.join(out, "confusion.png"))
    wrong = report_mod.confidently_wrong(list(eval_it.filepaths)[: len(probs)], y_true, y_pred, probs.max(axis=1),
                                         classes)
    plot_misclassified(wrong, os.path.join(out, "misclassified.png"))
    require_finite_weights(full, "the final model")
    full.save(os.path.join(out, "model.h5"), metadata=job.metadata)
    best, best_value = run_report.best_epoch(history_all, monitor)
    train_it, val_it = job.train_it, job.val_it
    skipped = run_report.unreadable_images(train_it, job.train_plain, val_it)
    failed = {p for p, _ in skipped}  # files that broke after the scan are in no batch
    n_train = train_it.samples - sum(1 for p in train_it.filepaths if p in failed)
    timings = job.timings
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
        "monitoring": run_report.monitoring_summary(history_all, job.gradient_warnings),
        "wall_seconds_this_session": time.time() - t0, "settings": config.settings(),
    })
    atomic_write_text(os.path.join(out, "report.json"), json.dumps(rep, indent=2))
    atomic_write_text(os.path.join(out, "report.md"), run_report.report_markdown(rep, config))
    job.state["finished"] = True
    save_state(out, job.state)
    shutil.rmtree(os.path.join(out, "backup"), ignore_errors=True)  # per-epoch backups: no longer needed
    _say(config, f"\nDone. Accuracy of model.h5 (epoch {kept['epoch']}) on {rep['evaluated_on']}: "
                 f"{rep['accuracy']:.4f}. Results in {out}/ (model.h5, best.h5, report.md, curves.png, "
                 "confusion.png, misclassified.png).")
    return rep


def unfreeze_top(base, layers=0, from_layer=None, batch_norm=False):
    """Make the top of the base trainable: its last ``layers`` layers with weights, or all from ``from_layer``.
    BatchNormalization layers stay frozen (moving statistics, no updates) unless ``batch_norm``: a small
    fine-tuning set's batch statistics would overwrite the ImageNet ones."""
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
    for layer in base.layers[cut:]:
        if isinstance(layer, BatchNormalization) and not batch_norm:
            layer.trainable = False
    return [l.name for l in base.layers[cut:] if l.weights and l.trainable]
