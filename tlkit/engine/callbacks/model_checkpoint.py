"""ModelCheckpoint: save the model (or its weights) during training."""
import math
import os
import warnings

import numpy as np

from tlkit.engine.callbacks.callback import BatchSaveCounter
from tlkit.engine.callbacks.early_stopping import MonitorCallback


class ModelCheckpoint(BatchSaveCounter, MonitorCallback):
    """Save the model each epoch (or every ``save_freq`` batches), or only when ``monitor`` improves.

    >>> ModelCheckpoint("ckpt/{epoch:02d}-{val_loss:.3f}.h5")                  # one file per epoch
    >>> ModelCheckpoint("best.weights.h5", monitor="val_accuracy", save_best_only=True,
    ...                 save_weights_only=True)                                 # mode "auto" -> max

    ``filepath`` is formatted with ``epoch`` (1-based), ``batch`` (1-based, batch saves) and every log
    key. tlkit writes HDF5, so it must end in ``.h5`` (``.weights.h5`` for weights, as Keras asks).
    Files are written atomically. With ``save_best_only`` a NaN/inf value is never taken as the best.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__(monitor, mode, initial_value_threshold)
        self.verbose = verbose
        self.filepath = os.fspath(filepath)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self._batches_seen_since_last_saving = 0
        self._current_epoch = 0
        if save_freq != "epoch" and not (isinstance(save_freq, int) and not isinstance(save_freq, bool)):
            raise ValueError(f"Unrecognized save_freq: {save_freq}. Expected save_freq are 'epoch' or integer values")
        if save_weights_only and not self.filepath.endswith(".weights.h5"):
            raise ValueError("When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must "
                             f"end in `.weights.h5` (Keras weights format). Received: filepath={self.filepath}")
        if not self.filepath.endswith((".keras", ".h5")):
            raise ValueError("The ModelCheckpoint filepath must end in `.keras` (Keras 3's model zip) or `.h5` "
                             f"(HDF5), e.g. 'best.keras'. Received: filepath={self.filepath}")

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._batch_save_due():
            self._save_model(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    def _save_model(self, epoch, batch, logs):
        logs = logs or {}
        filepath = self._get_file_path(epoch, batch, logs)
        if os.path.isdir(filepath):
            raise IsADirectoryError("Please specify a non-directory filepath for ModelCheckpoint. Filepath used is "
                                    f"an existing directory: {filepath}")
        if not self._should_save_model(epoch, logs, filepath):
            return
        if self.save_weights_only:
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: finished saving model to {filepath}", flush=True)

    def _should_save_model(self, epoch, logs, filepath):
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {filepath}", flush=True)
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=3)
            return True
        if isinstance(current, np.ndarray) and current.ndim > 0:
            warnings.warn(f"Can save best model only when `monitor` is a scalar value. Received: {current}. "
                          "Falling back to `save_best_only=False`.", stacklevel=3)
            return True
        if not math.isfinite(current):
            # Keras would take a first NaN as "best" and then never save again.
            warnings.warn(f"Epoch {epoch + 1}: {self.monitor} is {current}; not saving it as the best model "
                          f"(the best so far stays {self.best}).", stacklevel=3)
            return False
        best_str = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_str} to {current:.5f}, "
                      f"saving model to {filepath}", flush=True)
            self.best = current
            return True
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_str}", flush=True)
        return False

    def _get_file_path(self, epoch, batch, logs):
        fields = dict(logs)
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        fields["epoch"] = epoch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as e:
            # No single quotes in the message: KeyError shows its repr.
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". Reason: no value named '
                           f"`{e.args[0]}` at this point; the available names are: {', '.join(sorted(fields))}. "
                           "Use one of them (validation values exist only when fit() gets validation data).") from None
