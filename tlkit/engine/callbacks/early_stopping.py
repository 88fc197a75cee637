"""EarlyStopping, and MonitorCallback: the "is this value better?" logic it shares with
ModelCheckpoint and ReduceLROnPlateau (Keras 3 semantics)."""
import warnings

import numpy as np

from tlkit.engine.callbacks.callback import Callback


class MonitorCallback(Callback):
    """Base of callbacks that watch one log value (``monitor``) and ask whether it improved.

    ``mode="auto"`` picks the direction the way Keras 3 does: "loss" (and "val_loss") is minimized,
    other names take the direction of the compiled metric of that name; names containing
    "acc" or "auc" are maximized. Anything else needs ``mode="min"`` or ``"max"``.
    """

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op = None  # np.less or np.greater, decided once the model's metrics exist

    def _set_monitor_op(self):
        direction = self.mode if self.mode != "auto" else _auto_direction(self.model, self.monitor)
        if direction is None:
            raise ValueError(
                f"{type(self).__name__} callback received monitor={self.monitor}, but tlkit isn't able to "
                "automatically determine whether that metric should be maximized or minimized. Pass `mode='max'` "
                "in order to monitor based on the highest metric value, or pass `mode='min'` in order to use "
                "the lowest value."
            )
        self.monitor_op = np.less if direction == "min" else np.greater
        if self.monitor_op is np.less:
            self.min_delta = -self.min_delta  # "better" means below reference - min_delta

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        return bool(self.monitor_op(monitor_value - self.min_delta, reference_value))


def _auto_direction(model, monitor):
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return "min"
    for _, label, metric in getattr(model, "_metrics", None) or []:
        direction = getattr(metric, "_direction", None)
        if label == name and direction in ("up", "down"):
            return "max" if direction == "up" else "min"
    if "acc" in name or "auc" in name:  # accuracy flavours, AUC: higher is better
        return "max"
    return None


class EarlyStopping(MonitorCallback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    >>> stop = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    >>> model.fit(x, y, validation_split=0.2, epochs=100, callbacks=[stop])
    >>> stop.stopped_epoch, stop.best_epoch       # 0-based epochs

    As Keras 3: an epoch improves if it beats the best so far by more than ``min_delta``; the wait
    restarts only when it also beats ``baseline``. ``restore_best_weights`` puts back, at the end of
    training (stopped or not), the weights of the best epoch seen after ``start_from_epoch``.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.wait = 0
        self.stopped_epoch = 0
        self.restore_best_weights = restore_best_weights
        self.best_weights = None
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs=None):
        # The same instance may be reused for several fits.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()  # the first monitored epoch is the best so far
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.", flush=True)
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                          f"Available metrics are: {','.join(logs)}", stacklevel=2)
        return value
