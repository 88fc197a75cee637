"""The run folder of `tlkit finetune`: its identity, its lock, its state file and the resume checks.

    >>> with open_run(config, classes, say=print) as state:   # locked; refused runs change no file
    ...     train(config, state)                             # state["..."] kept with save_state()

A run is identified by its settings and its class list; ``--resume`` continues only the same run.
A run that never completed an epoch holds nothing worth keeping: a new run may start over it.
"""
import contextlib
import errno
import fcntl
import json
import math
import os
import shutil
import time

import numpy as np

from tlkit.utils.io import atomic_write_text, remove_stale_temporaries

RUN_FILE = "run.json"
LOCK_FILE = ".tlkit-run.lock"
BACKUP_DIR = "backup"
# The state keys run.json must hold, with their types.
_STATE_KEYS = {"settings": dict, "stage1_done": bool, "finished": bool}


class RunDirError(ValueError):
    """The output folder holds something that this run must not overwrite or cannot use."""


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite."""


# ----- identity and state -----
def _entries(out):
    """What the folder holds, leaving out the lock and temporaries of killed writes."""
    if not os.path.isdir(out):
        return []
    return [n for n in os.listdir(out) if n != LOCK_FILE and not (n.startswith(".") and n.endswith(".tmp"))]


def read_state(out):
    """run.json of ``out`` (None when there is none), checked: a damaged file is a one-line RunDirError."""
    path = os.path.join(out, RUN_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        problem = None if isinstance(state, dict) else "it is not a JSON object"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        state, problem = None, f"{type(e).__name__}: {e}"
    if problem is None:
        missing = [k for k, kind in _STATE_KEYS.items() if not isinstance(state.get(k), kind)]
        problem = f"{', '.join(missing)} missing or of the wrong type" if missing else None
    if problem is not None:
        raise RunDirError(f"{path} is damaged ({problem}), so the run in {out} can't be resumed or replaced "
                          "safely. Choose another --out folder, or delete that folder to start afresh.")
    return state


def save_state(out, state):
    atomic_write_text(os.path.join(out, RUN_FILE), json.dumps(state, indent=2))


def has_progress(out, state):
    """True once an epoch was completed (a backup exists) or stage 1 finished: something to keep."""
    if state.get("stage1_done") or state.get("finished"):
        return True
    for _, _, files in os.walk(os.path.join(out, BACKUP_DIR)):
        if any(not (n.startswith(".") and n.endswith(".tmp")) for n in files):
            return True
    return False


def _stored_classes(out, state):
    if isinstance(state.get("classes"), list):
        return state["classes"]
    try:  # runs started before the class list was part of run.json
        with open(os.path.join(out, "classes.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _check_same_run(out, state, settings, classes):
    differences = {k: (state["settings"].get(k), v) for k, v in settings.items() if state["settings"].get(k) != v}
    if differences:
        listed = "; ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in differences.items())
        raise RunDirError(f"--resume with different settings than the run in {out} ({listed}). Use the same "
                          "options, or a new --out folder.")
    stored = _stored_classes(out, state)
    if classes is not None and stored is not None and stored != classes:
        raise RunDirError(
            f"--resume: the classes changed since the run in {out} started (was {stored}, now {classes}); its "
            "model would mix up their labels. Restore the class folders as they were, or start a new run in "
            "another --out folder.")


def prepare(config, classes=None, say=None):
    """The state of the run in ``config.out``: a new one (run.json written) or the one to resume, checked.

    Raises RunDirError, having changed no file, when the folder holds another run, a different run,
    or something that is not a run."""
    out = config.out
    settings = config.settings()
    state = read_state(out)
    if state is not None and has_progress(out, state):
        if not config.resume:
            raise RunDirError(
                f"{out} already holds a run (started {state.get('started', '?')}). Pass --resume to continue "
                "it, or choose another --out folder.")
        _check_same_run(out, state, settings, classes)
        remove_stale_temporaries(out)  # half-written files of the run that was killed
        return state
    if state is None and _entries(out):
        raise RunDirError(f"{out} exists and is not empty, but holds no tlkit run. Choose another --out folder.")
    if state is None and config.resume:
        raise RunDirError(f"--resume: there is no run to resume in {out}.")
    if state is not None and say is not None:
        say(f"The run in {out} never completed an epoch: starting it afresh.")
    if state is not None:
        discard_unfinished(out)
    os.makedirs(out, exist_ok=True)
    state = {"settings": settings, "classes": classes, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
             "stage1_done": False, "finished": False, "stage1_history": None, "timings": {}}
    save_state(out, state)
    return state


def discard_unfinished(out):
    """Remove what a run that never completed an epoch wrote (nothing of value is in it)."""
    for name in (RUN_FILE, "classes.json"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, name))
    shutil.rmtree(os.path.join(out, BACKUP_DIR), ignore_errors=True)
    remove_stale_temporaries(out)


def check_out_folder(out, data_dir):
    """Refuse an --out inside the data folder: the run's pictures (curves.png, ...) would become training
    images of the next run, and the run folder a class of its own."""
    data, target = os.path.realpath(data_dir), os.path.realpath(out)
    if os.path.commonpath([data, target]) == data:
        raise RunDirError(f"--out {out} is inside the data folder {data_dir}: the run's files would be read as "
                          "images next time. Choose an --out folder outside it.")


# ----- the lock -----
class RunLock:
    """An exclusive lock on a run folder, held while a run uses it.

    The kernel releases a flock when its process ends however it ends, so the lock of a killed
    run never blocks the next one; the pid in the file only serves the message."""

    def __init__(self, out):
        self.path = os.path.join(out, LOCK_FILE)
        self.fd = None

    def acquire(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise RunDirError(
                    f"{os.path.dirname(self.path)} is in use by another tlkit run ({self._holder()}). Wait for it "
                    "to finish or stop it, or choose another --out folder.") from None
            # The holder before us may have removed the file between our open and our lock: lock the
            # file that is at the path now.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def _holder(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                return f"pid {int(f.read().strip())}"
        except (OSError, ValueError):
            return "pid unknown"

    def release(self):
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)  # while still locked: no other process can hold this file
        os.close(self.fd)
        self.fd = None


@contextlib.contextmanager
def open_run(config, classes, say=None):
    """Lock ``config.out`` and yield its checked state; always unlocks. If the run fails before it
    completes an epoch, what it wrote is removed, so it blocks no later run."""
    out = config.out
    check_out_folder(out, config.data_dir)
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    lock = RunLock(out).acquire()
    state = None
    try:
        state = prepare(config, classes, say)
        yield state
    except Exception:  # not on Ctrl-C: the message to resume must stay true
        if state is not None and not has_progress(out, state):
            discard_unfinished(out)
        raise
    finally:
        lock.release()
        if created and not _entries(out):
            with contextlib.suppress(OSError):
                os.rmdir(out)


# ----- training guards -----
def _nonfinite_weights(model):
    return [w.name for w in model.weights if not np.isfinite(w.value).all()]


def require_finite_weights(model, what):
    """Raise TrainingDiverged rather than record a model whose weights are NaN or infinite."""
    bad = _nonfinite_weights(model)
    if bad:
        raise TrainingDiverged(f"{what}: weights {', '.join(bad[:3])} are NaN or infinite; the model was not saved.")


def finite_guard(lr):
    """A callback that stops training with a TrainingDiverged error at the first batch whose loss is
    NaN or infinite, and at an epoch end whose weights or metrics are: before any later callback
    could save such a model as the best."""
    from tlkit.engine.callbacks import Callback

    hint = (f"Training diverged at {{where}}: {{what}} became NaN or infinite. Try a lower learning rate (--lr "
            f"{lr:g} now, e.g. --lr {lr / 10:g}). Models saved before it are kept.")

    class FiniteGuard(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise TrainingDiverged(hint.format(where=f"epoch {self.epoch + 1}, batch {batch + 1}",
                                                   what=f"the loss ({loss})"))

        def on_epoch_end(self, epoch, logs=None):
            bad = [k for k, v in (logs or {}).items() if isinstance(v, (int, float)) and not math.isfinite(v)]
            if bad or _nonfinite_weights(self.model):
                raise TrainingDiverged(hint.format(where=f"the end of epoch {epoch + 1}",
                                                   what=", ".join(bad) or "the weights"))

    return FiniteGuard()


def epoch_sync(*sources, offset=0):
    """A callback that sets each data source to the epoch fit is starting (plus ``offset``), so a resumed
    run reads the same shuffles and augmentations as an uninterrupted one. A source has ``start_epoch(e)``."""
    from tlkit.engine.callbacks import Callback

    class EpochSync(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            for source in sources:
                source.start_epoch(offset + epoch)

    return EpochSync()
