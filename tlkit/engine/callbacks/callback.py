"""Callback: hooks into fit/evaluate/predict, with Keras's names."""


class Callback:
    """Subclass and override any hook; ``self.model`` is the model being trained.

    >>> class Stopper(Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         if logs["loss"] < 0.1:
    ...             self.model.stop_training = True
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass

    # As Keras 3, the train batch hooks call their Keras 2 names, so a callback that overrides
    # on_batch_begin / on_batch_end still runs.
    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass


_HOOKS = [
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
]


class BatchSaveCounter:
    """``save_freq`` as Keras means it for checkpoints: "epoch", or an int N (every N batches)."""

    def _batch_save_due(self):
        """Count one batch; True when ``save_freq`` batches have passed since the last save."""
        if self.save_freq == "epoch":
            return False
        self._batches_seen_since_last_saving += 1
        if self._batches_seen_since_last_saving < self.save_freq:
            return False
        self._batches_seen_since_last_saving = 0
        return True


class CallbackList(Callback):
    """Calls each hook on every callback in order."""

    def __init__(self, callbacks=None, model=None, **params):
        super().__init__()
        self.callbacks = list(callbacks or [])
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def append(self, callback):
        self.callbacks.append(callback)

    def set_model(self, model):
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)


def _dispatch(hook):
    # As Keras, every hook gets a logs dict ({} when there are none), the same one for each
    # callback in turn, so keys a callback adds are seen by those after it.
    # Passed as Keras passes them: batch hooks get logs by keyword, the others positionally.
    if hook.endswith(("batch_begin", "batch_end")):
        def call(self, batch, logs=None):
            logs = {} if logs is None else logs
            for cb in self.callbacks:
                getattr(cb, hook)(batch, logs=logs)
    elif hook.startswith("on_epoch"):
        def call(self, epoch, logs=None):
            logs = {} if logs is None else logs
            for cb in self.callbacks:
                getattr(cb, hook)(epoch, logs)
    else:
        def call(self, logs=None):
            logs = {} if logs is None else logs
            for cb in self.callbacks:
                getattr(cb, hook)(logs)
    call.__name__ = hook
    return call


for _hook in _HOOKS:
    setattr(CallbackList, _hook, _dispatch(_hook))
