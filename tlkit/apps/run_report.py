"""What a finetune run says about itself: which weights it kept and why, where stage 2 began and what it
trained, and report.md. One source for the console, report.json/md, history.csv and curves.png."""
import json
import os
import re

import numpy as np

from tlkit.apps import report as report_mod


def monitored(has_validation):
    """The one value that picks the best epoch everywhere (early stopping, best.h5, the report)."""
    return "val_accuracy" if has_validation else "accuracy"


def best_epoch(history, monitor):
    """(1-based epoch, value) of the first epoch with the highest finite ``monitor`` value, or (None, None)."""
    values = [v if v is not None and np.isfinite(v) else -np.inf for v in history.get(monitor) or []]
    if not values or max(values) == -np.inf:
        return None, None
    k = int(np.argmax(values))
    return k + 1, float(values[k])


def kept_weights(history, monitor, stopper, first_epoch, patience=None):
    """Which epoch's weights the model holds after the last stage's fit, and why.

    ``stopper``: that fit's EarlyStopping (restoring its best weights) or None; ``first_epoch``: the
    1-based number of that stage's first epoch in the run's history."""
    n = len(history.get("stage", []))
    if stopper is None or stopper.best is None:
        return {"epoch": n, "monitor": monitor, "value": _value(history, monitor, n),
                "reason": "the last epoch (no early stopping)"}
    epoch = first_epoch + int(stopper.best_epoch)
    value = _value(history, monitor, epoch)
    shown = f"{value:.4f}" if value is not None else "n/a"
    if stopper.stopped_epoch > 0:
        stopped = first_epoch + int(stopper.stopped_epoch)
        why = (f"best {monitor} {shown} at epoch {epoch}; early stopping after epoch {stopped} ({patience} epochs "
               f"without improvement) restored the weights of epoch {epoch}")
    else:
        why = (f"best {monitor} {shown} at epoch {epoch}; training ran all its epochs and early stopping restored "
               f"the weights of epoch {epoch}")
    return {"epoch": epoch, "monitor": monitor, "value": value, "reason": why}


def _value(history, key, epoch):
    values = history.get(key) or []
    v = values[epoch - 1] if epoch and epoch <= len(values) else None
    return float(v) if v is not None and np.isfinite(v) else None


def mark_kept(history, epoch):
    """history.csv's "kept" column: 1 on the epoch whose weights model.h5 holds."""
    n = len(history.get("stage", []))
    history["kept"] = [1 if i + 1 == epoch else None for i in range(n)]
    return history


def stages(history, stage2_layers=None):
    """[{"stage", "first_epoch", "epochs", "trained"}] from the history's stage column."""
    column = list(history.get("stage", []))
    out = []
    for stage in (1, 2):
        if stage in column:
            trained = "the head (base frozen)" if stage == 1 else \
                f"the head and {len(stage2_layers or [])} base layers: {', '.join(stage2_layers or [])}"
            out.append({"stage": stage, "first_epoch": column.index(stage) + 1, "epochs": column.count(stage),
                        "trained": trained, "layers": list(stage2_layers or []) if stage == 2 else []})
    return out


# ----- monitoring: resources and gradients -----
def gradient_group(layer_name):
    """The curves' gradient-norm group of a layer: "head" for the head's layers, else the block of the base
    ("block5_conv1" -> "block5", "fire9/squeeze1x1" -> "fire9")."""
    if layer_name.startswith("head_") or layer_name == "predictions":
        return "head"
    return re.split(r"[/_]", layer_name)[0]


def monitoring_callbacks(gradient_warnings, say):
    """ResourceMonitor and GradientMonitor for a stage's fit; warnings go to the console and the list."""
    from tlkit.engine.callbacks import GradientMonitor, ResourceMonitor

    def warn(message):
        gradient_warnings.append(message)
        say(f"\nWarning: {message}")

    return [ResourceMonitor(), GradientMonitor(log_norms=True, group=gradient_group, on_warning=warn)]


def monitoring_summary(history, gradient_warnings):
    """Per stage: peak memory, mean CPU use, images/s and the data/compute split, from the history columns."""
    column = list(history.get("stage", []))
    out = {"gradient_warnings": list(gradient_warnings)}
    for stage in (1, 2):
        rows = [i for i, s in enumerate(column) if s == stage]

        def values(key):
            found = history.get(key) or []
            return [float(found[i]) for i in rows if i < len(found) and found[i] is not None]

        data, compute = sum(values("data_time")), sum(values("compute_time"))
        if not rows or not data + compute:
            continue
        out[f"stage{stage}"] = {
            "peak_memory_mb": max(values("memory_peak_mb"), default=None),
            "mean_cpu_percent": float(np.mean(values("cpu_percent"))) if values("cpu_percent") else None,
            "images_per_second": float(np.mean(values("images_per_sec"))),
            "data_seconds": data, "compute_seconds": compute, "data_fraction": data / (data + compute),
        }
    return out


def _monitoring_markdown(monitoring):
    lines = []
    for stage in (1, 2):
        m = monitoring.get(f"stage{stage}")
        if m:
            memory = f"{m['peak_memory_mb']:.0f} MB" if m["peak_memory_mb"] is not None else "n/a"
            cpu = f"{m['mean_cpu_percent']:.0f}%" if m["mean_cpu_percent"] is not None else "n/a"
            lines.append(f"- stage {stage}: peak memory {memory}, mean CPU {cpu} (100% = one core), "
                         f"{m['images_per_second']:.1f} images/s in training steps, {m['data_seconds']:.1f} s "
                         f"waiting for data and {m['compute_seconds']:.1f} s computing "
                         f"({100 * m['data_fraction']:.0f}% data)")
    lines = ["## Resources", ""] + lines + [""] if lines else []
    found = monitoring.get("gradient_warnings") or []
    lines += ["## Gradient warnings", ""] + ([f"- {w}" for w in found] or ["- none"]) + [""]
    return lines


def report_markdown(rep, config):
    kept, best = rep["kept_weights"], rep["best"]
    lines = ["# tlkit finetune report", "",
             f"- data: `{os.path.abspath(config.data_dir)}` ({rep['train_images']} training, {rep['val_images']} "
             f"validation images)",
             f"- base: {config.base} (weights: {config.weights}), image size {config.image_size}, head "
             f"`{config.head}`",
             f"- accuracy of model.h5 on {rep['evaluated_on']}: **{rep['accuracy']:.4f}** (macro F1 "
             f"{rep['macro_f1']:.4f})",
             f"- model.h5 holds the weights of epoch {kept['epoch']}: {kept['reason']}",
             f"- best.h5 holds epoch {best['epoch']} (the highest {best['monitor']}: "
             + (f"{best['value']:.4f})" if best["value"] is not None else "n/a)"),
             f"- epochs: {rep['epochs']}", ""]
    for s in rep["stages"]:
        lines.append(f"- stage {s['stage']}: epochs {s['first_epoch']}-{s['first_epoch'] + s['epochs'] - 1}, trained "
                     f"{s['trained']}")
    t = rep["timings"]
    for stage in (1, 2):
        if f"stage{stage}_seconds" in t:
            ips = rep["images_per_second"].get(f"stage{stage}")
            lines.append(f"- stage {stage} time: {t[f'stage{stage}_seconds']:.1f} s" +
                         (f", {ips:.1f} training images/s" if ips else ""))
    lines += [""] + (_monitoring_markdown(rep["monitoring"]) if rep.get("monitoring") else [])
    lines += ["![training curves](curves.png)", "", "## Per class", "", report_mod.markdown_table(rep), "",
              "![confusion matrix](confusion.png)", ""]
    if rep.get("most_confused"):
        lines += ["## Most confused classes", "", "| true | predicted | count |", "|---|---|---:|"]
        cell = report_mod.table_cell
        lines += [f"| {cell(p['true'])} | {cell(p['predicted'])} | {p['count']} |" for p in rep["most_confused"]]
        lines.append("")
    if rep.get("confidently_wrong"):
        lines += ["## Most confidently wrong", "", "![most confidently wrong images](misclassified.png)", ""]
        one = report_mod.one_line
        lines += [f"- `{one(w['path'])}`: {one(w['true'])}, predicted {one(w['predicted'])} ({w['probability']:.3f})"
                  for w in rep["confidently_wrong"]]
        lines.append("")
    if rep["skipped_images"]:
        lines += [f"## Skipped images ({len(rep['skipped_images'])})", ""]
        lines += [f"- `{report_mod.one_line(s['path'])}`: {report_mod.one_line(s['reason'])}"
                  for s in rep["skipped_images"]]
        lines.append("")
    lines += ["## Settings", "", "```json", json.dumps(rep["settings"], indent=2), "```", ""]
    return "\n".join(lines)


def throughput(timings, n_train):
    out = {}
    for stage in (1, 2):
        secs, epochs = timings.get(f"stage{stage}_seconds"), timings.get(f"stage{stage}_epochs")
        if secs and epochs:
            out[f"stage{stage}"] = n_train * epochs / secs
    return out


def unreadable_images(*iterators):
    """[(path, reason)] of every file the iterators left out, at the scan or when decoding, each once
    (the subsets of a --val-split and the plain and augmented iterators read the same files)."""
    found = {}
    for it in iterators:
        for path, reason in getattr(it, "skipped", []) if it is not None else []:
            found.setdefault(path, reason)
    return list(found.items())
