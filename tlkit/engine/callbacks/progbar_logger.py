"""ProgbarLogger: the progress bar fit/evaluate/predict print."""
from tlkit.engine.callbacks.callback import Callback
from tlkit.utils.progbar import Progbar


class ProgbarLogger(Callback):
    """verbose=1: a bar per epoch with ETA and running metrics; verbose=2: one line per epoch."""

    def __init__(self, count_mode="steps", verbose=1):
        super().__init__()
        self.verbose = verbose
        self._bar = None
        self._mode = "train"

    def set_params(self, params):
        super().set_params(params)
        self.verbose = params.get("verbose", self.verbose)
        self.epochs = params.get("epochs", 1)

    def _new_bar(self, target):
        self._bar = Progbar(target, verbose=self.verbose, unit_name="step")

    def on_train_begin(self, logs=None):
        self._mode = "train"

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose and self.epochs > 1:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)
        self._new_bar(self.params.get("steps"))

    def on_train_batch_end(self, batch, logs=None):
        self._bar.update(batch + 1, list((logs or {}).items()), finalize=False)

    def on_epoch_end(self, epoch, logs=None):
        self._bar.stateful_metrics = set(logs or {})
        self._bar.update(self._bar._seen, list((logs or {}).items()), finalize=True)

    def on_test_begin(self, logs=None):
        self._inner_test = self._mode == "train"
        if not self._inner_test:
            self._new_bar(self.params.get("steps"))

    def on_test_batch_end(self, batch, logs=None):
        if not self._inner_test:
            self._bar.update(batch + 1, list((logs or {}).items()), finalize=False)

    def on_test_end(self, logs=None):
        if not self._inner_test:
            self._bar.stateful_metrics = set(logs or {})
            self._bar.update(self._bar._seen, list((logs or {}).items()), finalize=True)

    def on_predict_begin(self, logs=None):
        self._new_bar(self.params.get("steps"))

    def on_predict_batch_end(self, batch, logs=None):
        self._bar.update(batch + 1, finalize=False)

    def on_predict_end(self, logs=None):
        self._bar.update(self._bar._seen, finalize=True)

    def on_train_end(self, logs=None):
        self._mode = None
        self._bar = None
