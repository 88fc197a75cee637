"""BackupAndRestore: resume an interrupted fit exactly where its last backup left it."""
import json
import os
import shutil
import uuid
import warnings

import numpy as np

from tlkit.utils import random as tl_random
from tlkit.engine.callbacks.callback import Callback, BatchSaveCounter
from tlkit.utils.io import atomic_h5_file, atomic_path, atomic_write_text

_FORMAT = "tlkit-backup-1"


class BackupAndRestore(BatchSaveCounter, Callback):
    """Back up the training state to ``backup_dir``; a later ``fit`` with it resumes from there.

    >>> backup = BackupAndRestore("/tmp/run1_backup")
    >>> model.fit(x, y, epochs=10, callbacks=[backup])    # killed during epoch 6...
    >>> model.fit(x, y, epochs=10, callbacks=[backup])    # ...resumes at epoch 6 (1-based)

    Each backup is one HDF5 file, replaced atomically (a crash mid-write leaves the previous one):
    the weights, the optimizer state, the number of completed epochs, the History so far and
    tlkit's random state. Restoring all of it makes the resumed run continue with the same
    shuffling and dropout, so it ends bit-identical to an uninterrupted run with the same seed.
    (Log keys that callbacks after this one add to an epoch, e.g. "learning_rate", reach the backed-up
    History through a small side file, so the weights are written once per epoch.)

    save_freq: "epoch" (back up after each epoch) or an int N (every N batches; as Keras, the
        interrupted epoch is then rerun from its start, with the weights of the last backup).
    double_checkpoint: also keep the previous backup, used if the latest can't be read.
    delete_checkpoint: delete the backup when fit ends normally (an exception keeps it).
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch" and not (isinstance(save_freq, int) and not isinstance(save_freq, bool)):
            raise ValueError(f"Invalid value for argument `save_freq`. Received: save_freq={save_freq}. "
                             "Expected either 'epoch' or an integer value.")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint
        self._path = os.path.join(self.backup_dir, "latest.backup.h5")
        self._prev_path = self._path + ".bkp"
        self._history_path = os.path.join(self.backup_dir, "latest.history.json")
        self._backup_id = None  # pairs the history side file with the backup it completes
        self._batches_seen_since_last_saving = 0
        self._completed_epochs = 0
        self._epoch_rng_state = None
        self._pending_history = None
        self._saved_history = None  # the History in the last epoch-end backup, until it is completed

    # ----- restoring -----
    def on_train_begin(self, logs=None):
        self._pending_history = None
        self._saved_history = None
        self._batches_seen_since_last_saving = 0
        paths = [p for p in (self._path, self._prev_path) if os.path.exists(p)]
        if paths and not self.model.weights:
            raise ValueError("To use the BackupAndRestore callback, your model must be built before you call "
                             f"`fit()`. Model {self.model.name} is unbuilt. You can build it beforehand by calling "
                             "it on a batch of data, or start it with an Input.")
        for i, path in enumerate(paths):
            try:
                self._restore(path)
                return
            except (OSError, KeyError, ValueError) as e:
                if i == len(paths) - 1:
                    raise ValueError(f"The training backup {path} can't be restored ({e}). If it belongs to another "
                                     f"model or run, delete {self.backup_dir} to start training afresh.") from e
                warnings.warn(f"The training backup {path} is unreadable ({e}); using the previous one.",
                              stacklevel=2)

    def _restore(self, path):
        import h5py  # here, not at import: `import tlkit` stays without h5py until a backup is read

        model = self.model
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != _FORMAT:
                raise ValueError("not a tlkit training backup")
            weights = [f["weights"][str(i)][()] for i in range(len(f["weights"]))]
            keys = json.loads(f["optimizer"].attrs["keys"])
            optimizer_state = {key: f["optimizer"][str(i)][()] for i, key in enumerate(keys)}
            completed = int(f.attrs["completed_epochs"])
            history = json.loads(f.attrs["history"])
            rng_state = json.loads(f.attrs["rng_state"])
            backup_id = f.attrs["backup_id"]
        history = self._completed_history(backup_id) or history
        model.set_weights(weights)
        if model.optimizer is not None and optimizer_state:
            model.optimizer.set_state(optimizer_state)
        tl_random.set_state(rng_state)
        model._initial_epoch = completed
        self._completed_epochs = completed
        self._pending_history = history

    def _completed_history(self, backup_id):
        """The side file's fuller History, if it belongs to this backup (else the backup's own)."""
        try:
            with open(self._history_path, encoding="utf-8") as f:
                side = json.load(f)
        except (OSError, ValueError):
            return None
        return side["history"] if side.get("backup_id") == backup_id else None

    def _refill_history(self):
        # Done after every on_train_begin, so it holds whatever the History's position in the list.
        if self._pending_history is None:
            return
        history = self.model.history
        history.epoch = list(self._pending_history["epoch"])
        history.history = {k: list(v) for k, v in self._pending_history["history"].items()}
        self._pending_history = None

    # ----- backing up -----
    def on_epoch_begin(self, epoch, logs=None):
        self._refill_history()
        self._complete_saved_history()
        self._completed_epochs = epoch
        self._epoch_rng_state = tl_random.get_state()  # what a rerun of this epoch must start from

    def on_train_batch_end(self, batch, logs=None):
        if self._batch_save_due():
            self._save(self._completed_epochs, self._epoch_rng_state, self._history_so_far())

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq != "epoch":
            return
        history = self._history_so_far()
        if not history["epoch"] or history["epoch"][-1] != epoch:  # the History runs after us: add the epoch
            history["epoch"].append(epoch)
            for key, value in (logs or {}).items():
                history["history"].setdefault(key, []).append(_jsonable(value))
        self._save(epoch + 1, tl_random.get_state(), history)
        self._saved_history = history

    def _complete_saved_history(self):
        # Callbacks after this one may have added log keys (e.g. "learning_rate") that the History
        # recorded: put the full History in the side file (atomic, paired with the backup by its id).
        if self._saved_history is None:
            return
        history = self._history_so_far()
        if history != self._saved_history:
            atomic_write_text(self._history_path, json.dumps({"backup_id": self._backup_id, "history": history}))
        self._saved_history = None

    def _history_so_far(self):
        history = self.model.history
        return {"epoch": list(history.epoch),
                "history": {k: [_jsonable(v) for v in values] for k, values in history.history.items()}}

    def _save(self, completed_epochs, rng_state, history):
        model = self.model
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._path):
            with atomic_path(self._prev_path) as tmp:
                shutil.copyfile(self._path, tmp)
        optimizer_state = model.optimizer.get_state() if model.optimizer is not None else {}
        backup_id = uuid.uuid4().hex
        with atomic_h5_file(self._path) as f:  # built in memory: a full disk can't crash libhdf5
            f.attrs["format"] = _FORMAT
            f.attrs["backup_id"] = backup_id
            f.attrs["completed_epochs"] = completed_epochs
            f.attrs["history"] = json.dumps(history)
            f.attrs["rng_state"] = json.dumps(rng_state)
            weights = f.create_group("weights")
            for i, w in enumerate(model.get_weights()):
                weights.create_dataset(str(i), data=w)
            group = f.create_group("optimizer")
            group.attrs["keys"] = json.dumps(list(optimizer_state))
            for i, value in enumerate(optimizer_state.values()):
                group.create_dataset(str(i), data=np.asarray(value))
        self._backup_id = backup_id

    def on_train_end(self, logs=None):
        self._refill_history()
        if not self.delete_checkpoint:
            self._complete_saved_history()
            return
        # Only our own files: the folder may hold other things.
        for path in (self._path, self._prev_path, self._history_path):
            if os.path.exists(path):
                os.remove(path)
        if os.path.isdir(self.backup_dir) and not os.listdir(self.backup_dir):
            os.rmdir(self.backup_dir)


def _jsonable(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value
