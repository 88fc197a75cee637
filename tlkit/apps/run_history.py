"""The run's history across its stages: combined per epoch, written to history.csv, and the callback
that keeps the run folder current after every epoch (history.csv, curves.png, best.h5)."""
import csv
import io
import os

import numpy as np

from tlkit.apps.plots import plot_curves
from tlkit.utils.io import atomic_write_text


def run_callbacks(config, full_model, stage, prior_history, metadata, monitor):
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
