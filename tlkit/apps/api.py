"""``tlkit.finetune(...)``: the ``tlkit finetune`` job from Python, with the same options and checks.

    >>> import tlkit
    >>> result = tlkit.finetune("photos/", base="squeezenet", weights="squeezenet_notop.h5", epochs=5,
    ...                         out="runs/mine", verbose=0)
    >>> result.accuracy, result.history["val_accuracy"], result.paths["model"]
"""
import csv
import dataclasses
import os

from tlkit.apps.finetune import FinetuneConfig, run

RUN_FILES = {"model": "model.h5", "best": "best.h5", "stage1": "stage1.h5", "classes": "classes.json",
             "history": "history.csv", "curves": "curves.png", "confusion": "confusion.png",
             "misclassified": "misclassified.png", "report_json": "report.json", "report_md": "report.md",
             "run": "run.json"}


@dataclasses.dataclass
class FinetuneResult:
    """What a finished run produced: ``report`` (as report.json), ``history`` (as history.csv: one list per
    column, epochs counted from 1), ``paths`` (name -> file of the run folder), ``out`` (the folder)."""
    out: str
    report: dict
    history: dict
    paths: dict

    @property
    def accuracy(self):
        return self.report["accuracy"]


def finetune(data_dir, out=None, **options):
    """Train a classifier on ``data_dir`` like ``tlkit finetune``; options are FinetuneConfig's fields
    (the command's options with underscores: ``base``, ``weights``, ``epochs``, ``fine_tune_layers``...)."""
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"tlkit.finetune() got unknown option(s) {', '.join(unknown)}; the options are: "
                        f"{', '.join(sorted(fields - {'data_dir', 'out'}))}.")
    out = out or os.path.join("runs", os.path.basename(os.path.abspath(data_dir)))
    report = run(FinetuneConfig(data_dir=os.fspath(data_dir), out=os.fspath(out), **options))
    paths = {name: os.path.join(out, file) for name, file in RUN_FILES.items()
             if os.path.exists(os.path.join(out, file))}
    return FinetuneResult(out=os.fspath(out), report=report, history=read_history_csv(paths["history"]), paths=paths)


def read_history_csv(path):
    """history.csv -> {column: [values]}; numbers as floats (epoch and stage as ints), empty cells as None."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    history = {}
    for key in columns:
        cast = int if key in ("epoch", "stage", "kept") else float
        history[key] = [cast(float(r[key])) if r[key] not in ("", None) else None for r in rows]
    return history
