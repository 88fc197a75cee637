"""History: the per-epoch logs that fit returns."""
from tlkit.engine.callbacks.callback import Callback


class History(Callback):
    """``history.history["val_loss"]`` lists one value per epoch; ``history.epoch`` the epochs."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        if not getattr(self, "_keep", False):
            self.epoch = []
            self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self
