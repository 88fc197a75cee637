"""Keras callbacks in real fits of a tiny Dense model on synthetic data."""
import csv
import json
import math
import os

import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.callbacks import (BackupAndRestore, Callback, CSVLogger, EarlyStopping, History, LambdaCallback,
                             LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN)
from tlkit.utils import random as tl_random


def make_data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x @ rng.standard_normal((4, 1)) + 0.1).astype(np.float32)
    return x, y


def make_model(seed=0, dropout=0.0, optimizer="sgd"):
    tlkit.utils.set_random_seed(seed)
    layers = [tlkit.Input((4,)), L.Dense(6, activation="relu")]
    if dropout:
        layers.append(L.Dropout(dropout))
    model = tlkit.Sequential(layers + [L.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return model


class Script(Callback):
    """Replaces logs[key] at each epoch end with a scripted value and records the weights then."""

    def __init__(self, values, key="val_loss"):
        super().__init__()
        self.values, self.key, self.weights = list(values), key, []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append(self.model.get_weights())


def fit(model, callbacks, epochs, **kwargs):
    x, y = make_data()
    return model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks, **kwargs)


def assert_weights_equal(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


# ----- EarlyStopping -----
def test_early_stopping_restores_the_best_weights():
    model = make_model()
    script = Script([3.0, 1.0, 2.0, 2.5, 4.0, 0.5])
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    history = fit(model, [script, stop], epochs=6)
    assert history.epoch == [0, 1, 2, 3]  # best at epoch 1, two epochs without improvement, stopped after epoch 3
    assert stop.stopped_epoch == 3 and stop.best_epoch == 1 and stop.best == 1.0
    assert_weights_equal(model.get_weights(), script.weights[1])
    assert not np.array_equal(script.weights[1][0], script.weights[3][0])  # restoring really changed them


def test_early_stopping_without_restore_keeps_the_last_weights_and_prints(capsys):
    model = make_model()
    script = Script([3.0, 1.0, 2.0, 2.5])
    fit(model, [script, EarlyStopping(patience=1, verbose=1)], epochs=4)
    assert_weights_equal(model.get_weights(), script.weights[2])
    assert "Epoch 3: early stopping" in capsys.readouterr().out


def test_early_stopping_baseline_only_resets_the_wait_when_beaten():
    # Never better than the baseline: Keras stops after `patience` monitored epochs and still restores the best.
    model = make_model()
    script = Script([3.0, 1.0, 2.0, 0.9, 0.8])
    stop = EarlyStopping(patience=2, baseline=0.5, restore_best_weights=True)
    fit(model, [script, stop], epochs=5)
    assert stop.stopped_epoch == 2
    assert_weights_equal(model.get_weights(), script.weights[1])
    # Beating the baseline (2.0) at epochs 1 and 3 resets the wait each time.
    stop = EarlyStopping(patience=2, baseline=2.0)
    history = fit(make_model(), [Script([3.0, 1.0, 1.5, 0.5, 0.6, 0.7]), stop], epochs=6)
    assert history.epoch == [0, 1, 2, 3, 4, 5] and stop.stopped_epoch == 5


def test_early_stopping_start_from_epoch_min_delta_and_max_mode():
    stop = EarlyStopping(patience=1, start_from_epoch=3)
    fit(make_model(), [Script([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), stop], epochs=6)
    assert stop.stopped_epoch == 4  # epochs 0-2 ignored; 3 is the first monitored (best), 4 is worse
    stop = EarlyStopping(monitor="loss", patience=1, min_delta=0.5)
    fit(make_model(), [Script([3.0, 2.8, 2.6, 1.0], key="loss"), stop], epochs=4)
    assert stop.stopped_epoch == 1  # 2.8 is not 0.5 better than 3.0
    stop = EarlyStopping(monitor="val_accuracy", patience=1)  # "auto" -> max for accuracy
    fit(make_model(), [Script([0.1, 0.5, 0.4, 0.9], key="val_accuracy"), stop], epochs=4)
    assert stop.stopped_epoch == 2 and stop.best == 0.5


def test_monitor_direction_must_be_known():
    with pytest.raises(ValueError, match="mode='max'"):
        fit(make_model(), [Script([1.0], key="val_weird"), EarlyStopping(monitor="val_weird")], epochs=1)
    with pytest.warns(UserWarning, match="unknown, fallback to auto"):
        EarlyStopping(mode="lowest")


def test_missing_monitor_warns_with_the_available_names():
    with pytest.warns(UserWarning, match="`val_loss` which is not available. Available metrics are: loss,mae"):
        fit(make_model(), [EarlyStopping()], epochs=1)


# ----- ReduceLROnPlateau -----
def test_reduce_lr_on_plateau_lowers_the_rate_with_cooldown_and_floor(capsys):
    model = make_model()
    model.optimizer.learning_rate = 0.01
    reduce = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.002, verbose=1)
    history = fit(model, [Script([1.0] * 9), reduce], epochs=9)
    # Each logged rate is the one the epoch trained with. Reductions after epochs 2, 4 and 6: a cooldown
    # epoch doesn't count, the next one does; the last reduction is clamped to min_lr.
    assert history.history["learning_rate"] == [0.01, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.002, 0.002]
    assert model.optimizer.learning_rate == 0.002  # not reduced again: it is at min_lr
    assert "Epoch 3: ReduceLROnPlateau reducing learning rate to 0.005." in capsys.readouterr().out


def test_reduce_lr_actually_changes_the_update_size():
    # With SGD, an epoch after the rate is cut to (almost) nothing leaves the weights (almost) unchanged.
    model = make_model()
    script = Script([1.0, 1.0, 1.0])
    fit(model, [script, ReduceLROnPlateau(factor=1e-9, patience=1, min_delta=0.0)], epochs=3)
    moved = np.abs(script.weights[1][0] - script.weights[0][0]).max()
    still = np.abs(script.weights[2][0] - script.weights[1][0]).max()
    assert moved > 1e-4 and still < moved * 1e-6


def test_reduce_lr_rejects_factor_at_least_one():
    with pytest.raises(ValueError, match="factor >= 1.0"):
        ReduceLROnPlateau(factor=1.0)


# ----- LearningRateScheduler -----
def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    model = make_model()
    script = Script([0.0] * 4, key="unused")
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return 0.0 if epoch == 2 else 0.05 / (epoch + 1)

    history = fit(model, [LearningRateScheduler(schedule), script], epochs=4)
    assert history.history["learning_rate"] == [0.05, 0.025, 0.0, 0.0125]
    assert seen[1] == (1, 0.05)  # gets the current rate
    assert_weights_equal(script.weights[2], script.weights[1])  # the epoch at rate 0 changed nothing
    history = fit(make_model(), [LearningRateScheduler(lambda epoch: 0.01 * 0.5 ** epoch)], epochs=2)  # Keras 1 form
    assert history.history["learning_rate"] == [0.01, 0.005]
    with pytest.raises(ValueError, match="should be a float"):
        fit(make_model(), [LearningRateScheduler(lambda epoch, lr: 1)], epochs=1)


# ----- CSVLogger -----
def read_rows(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_csv_logger_writes_one_row_per_epoch_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    model = make_model()
    first = fit(model, [CSVLogger(path)], epochs=2)
    rows = read_rows(path)
    assert rows[0] == ["epoch", "loss", "mae", "val_loss", "val_mae"]  # val_ columns even without validation
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    assert [float(r[1]) for r in rows[1:]] == first.history["loss"]  # exact: repr round-trips
    assert rows[1][3] == "NA"
    second = fit(model, [CSVLogger(path, append=True)], epochs=2)
    rows = read_rows(path)
    assert len(rows) == 5 and sum(r[0] == "epoch" for r in rows) == 1
    assert [float(r[1]) for r in rows[3:]] == second.history["loss"]
    fit(model, [CSVLogger(path)], epochs=1)  # append=False starts over
    assert len(read_rows(path)) == 2


def test_csv_logger_flushes_each_epoch_and_handles_separator_and_empty_file(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("")
    lines_at_epoch_end = []
    spy = LambdaCallback(on_epoch_end=lambda epoch, logs: lines_at_epoch_end.append(len(read_rows(path, ";"))))
    x, y = make_data()
    make_model().fit(x, y, epochs=2, verbose=0, validation_data=(x[:8], y[:8]),
                     callbacks=[CSVLogger(path, separator=";", append=True), spy])
    assert lines_at_epoch_end == [2, 3]  # header + row 0 on disk before epoch 1 starts
    rows = read_rows(path, ";")
    assert rows[0] == ["epoch", "loss", "mae", "val_loss", "val_mae"] and "NA" not in rows[2]


# ----- ModelCheckpoint -----
def test_model_checkpoint_fills_the_template_each_epoch(tmp_path):
    model = make_model()
    script = Script([0.0] * 3, key="unused")
    history = fit(model, [ModelCheckpoint(tmp_path / "w-{epoch:02d}-{loss:.3f}.weights.h5",
                                          save_weights_only=True), script], epochs=3)
    names = sorted(os.listdir(tmp_path))
    assert names == [f"w-{e + 1:02d}-{loss:.3f}.weights.h5" for e, loss in enumerate(history.history["loss"])]
    probe = make_model(seed=5)
    probe.load_weights(tmp_path / names[1])
    assert_weights_equal(probe.get_weights(), script.weights[1])


def test_model_checkpoint_save_best_only_keeps_the_best_full_model(tmp_path, capsys):
    path = tmp_path / "best.h5"
    model = make_model()
    script = Script([3.0, 1.0, 2.0, 0.5, 0.7])
    check = ModelCheckpoint(path, save_best_only=True, verbose=1)
    fit(model, [script, check], epochs=5)
    assert check.best == 0.5
    loaded = tlkit.models.load_model(path)
    assert_weights_equal(loaded.get_weights(), script.weights[3])
    out = capsys.readouterr().out
    assert "Epoch 2: val_loss improved from 3.00000 to 1.00000, saving model to" in out
    assert "Epoch 3: val_loss did not improve from 1.00000" in out


def test_model_checkpoint_initial_value_threshold_and_nan(tmp_path):
    path = tmp_path / "best.weights.h5"
    script = Script([2.0, 1.4, 1.6])
    fit(make_model(), [script, ModelCheckpoint(path, save_best_only=True, save_weights_only=True,
                                                initial_value_threshold=1.5)], epochs=3)
    probe = make_model(seed=3)
    probe.load_weights(path)
    assert_weights_equal(probe.get_weights(), script.weights[1])  # 2.0 was not below the threshold
    # A NaN is never "the best": Keras would take a first NaN as best and never save again.
    path.unlink()
    script = Script([math.nan, 2.0, math.inf, 1.0])
    check = ModelCheckpoint(path, save_best_only=True, save_weights_only=True)
    with pytest.warns(UserWarning, match="val_loss is (nan|inf); not saving it as the best") as caught:
        fit(make_model(), [script, check], epochs=4)
    assert len(caught) == 2
    assert check.best == 1.0
    probe.load_weights(path)
    assert_weights_equal(probe.get_weights(), script.weights[3])


def test_model_checkpoint_every_n_batches(tmp_path):
    # 24 samples / batch 8 = 3 batches per epoch; every 2 batches over 2 epochs: (1, 2), (2, 1), (2, 3).
    fit(make_model(), [ModelCheckpoint(tmp_path / "e{epoch}-b{batch}.weights.h5", save_weights_only=True,
                                       save_freq=2)], epochs=2)
    assert sorted(os.listdir(tmp_path)) == ["e1-b2.weights.h5", "e2-b1.weights.h5", "e2-b3.weights.h5"]


def test_model_checkpoint_bad_paths_say_what_to_do(tmp_path):
    with pytest.raises(KeyError, match="no value named `val_acc` .*the available names are: epoch, loss, mae"):
        fit(make_model(), [ModelCheckpoint(tmp_path / "m-{val_acc:.2f}.h5")], epochs=1)
    with pytest.raises(ValueError, match=r"must end in `.keras` .* or `.h5`"):
        ModelCheckpoint(tmp_path / "m.pkl")
    with pytest.raises(ValueError, match=r"must end in `.weights.h5`"):
        ModelCheckpoint(tmp_path / "m.h5", save_weights_only=True)
    with pytest.raises(ValueError, match="Unrecognized save_freq"):
        ModelCheckpoint(tmp_path / "m.h5", save_freq="batch")
    (tmp_path / "dir.h5").mkdir()
    with pytest.raises(IsADirectoryError, match="non-directory filepath"):
        fit(make_model(), [ModelCheckpoint(tmp_path / "dir.h5")], epochs=1)


# ----- TerminateOnNaN -----
def test_terminate_on_nan_stops_at_the_bad_batch(capsys):
    x, y = make_data()
    x[17, 0] = np.nan  # sample 17 is in batch 2 (no shuffling)
    batches = []
    model = make_model()
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                        callbacks=[TerminateOnNaN(), LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))])
    assert batches == [0, 1, 2] and history.epoch == [0]
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 2"):
        make_model().fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[TerminateOnNaN(raise_error=True)])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings while diverging
def test_terminate_on_nan_stops_a_diverging_run():
    # SGD at rate 1 blows up within a few epochs (exactly when depends on the initial weights).
    batches = []
    history = fit(make_model(optimizer=tlkit.optimizers.SGD(1.0)),
                  [TerminateOnNaN(), LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(logs["loss"]))],
                  epochs=6, shuffle=False)
    assert len(history.epoch) < 6
    assert all(math.isfinite(loss) for loss in batches[:-1]) and not math.isfinite(batches[-1])
    # No batch after the bad one: it was the last batch seen, in the last epoch started (3 batches each).
    assert 3 * (len(history.epoch) - 1) < len(batches) <= 3 * len(history.epoch)


def test_terminate_on_nan_lets_finite_training_run():
    history = fit(make_model(), [TerminateOnNaN()], epochs=2)
    assert history.epoch == [0, 1]


# ----- LambdaCallback -----
def test_lambda_callback_calls_each_hook_with_its_arguments():
    calls = []
    cb = LambdaCallback(on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, sorted(logs))),
                        on_batch_end=lambda batch, logs: calls.append(("batch_end", batch, sorted(logs))),  # Keras 2
                        on_test_end=lambda logs: calls.append(("test_end", sorted(logs))),  # any hook by keyword
                        on_train_end=lambda logs: calls.append(("train_end", sorted(logs))))
    x, y = make_data(n=16)
    make_model().fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y), callbacks=[cb])
    assert calls == [("batch_end", 0, ["loss", "mae"]), ("batch_end", 1, ["loss", "mae"]),
                     ("test_end", ["loss", "mae"]), ("epoch_end", 0, ["loss", "mae", "val_loss", "val_mae"]),
                     ("train_end", ["loss", "mae", "val_loss", "val_mae"])]


def test_lambda_callback_begin_hooks_get_logs_as_in_keras():
    calls = []
    cb = LambdaCallback(on_train_begin=lambda logs: calls.append(("train_begin", logs)),
                        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch, logs)),
                        on_train_batch_begin=lambda batch, logs: calls.append(("batch_begin", batch, logs)))
    fit(make_model(), [cb], epochs=1)
    assert calls[:3] == [("train_begin", {}), ("epoch_begin", 0, {}), ("batch_begin", 0, {})]


# ----- Callback / CallbackList -----
def test_keras2_batch_hook_names_still_run_and_logs_are_shared():
    class Keras2Style(Callback):  # overrides only the Keras 2 names, as older Keras code does
        def __init__(self):
            super().__init__()
            self.calls = []

        def on_batch_begin(self, batch, logs=None):
            self.calls.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            self.calls.append(("end", batch, logs["loss"]))
            logs["seen_by_next"] = True  # one logs dict goes through the callbacks in turn

    old, after = Keras2Style(), []
    fit(make_model(), [old, LambdaCallback(on_train_batch_end=lambda b, logs: after.append(logs.get("seen_by_next")))],
        epochs=1)
    assert [c[:2] for c in old.calls] == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1), ("begin", 2), ("end", 2)]
    assert after == [True, True, True]


# ----- BackupAndRestore -----
class Crash(Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt("simulated crash")


def backup_model(seed=7):
    return make_model(seed=seed, dropout=0.3, optimizer=tlkit.optimizers.Adam(0.01))


def fit_for_backup(model, callbacks, epochs=5):
    x, y = make_data(n=30)
    return model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, validation_split=0.2, callbacks=callbacks)


def schedule(epoch, lr):
    return 0.01 * 0.9 ** epoch


@pytest.mark.parametrize("fresh_model", [False, True])
@pytest.mark.parametrize("history_first", [False, True])
def test_backup_and_restore_resumes_bit_identically(tmp_path, fresh_model, history_first):
    """Crash in epoch 3; a second fit resumes at epoch 3 and ends exactly like an uninterrupted run."""
    def order(callbacks):  # the History's place decides whether it records "learning_rate"
        return [History()] + callbacks if history_first else callbacks

    def extra():  # adds "learning_rate" to the logs after the backup was written
        return [LearningRateScheduler(schedule)]

    reference_model = backup_model()
    reference = fit_for_backup(reference_model, order(extra()))
    assert ("learning_rate" in reference.history) != history_first

    model = backup_model()
    backup = BackupAndRestore(tmp_path / "backup")
    with pytest.raises(KeyboardInterrupt):
        fit_for_backup(model, order([backup, Crash(epoch=2, batch=1)] + extra()))
    # The side file completes the History with the keys LearningRateScheduler adds after the backup.
    assert sorted(os.listdir(tmp_path / "backup")) == ["latest.backup.h5"] + ([] if history_first else
                                                                             ["latest.history.json"])
    tl_random.get_rng().random(10)  # the RNG moved on since: the backup must bring it back
    if fresh_model:  # as after a restart: a new process builds and compiles the model again
        model = backup_model(seed=123)
    epochs_run = []
    resumed = fit_for_backup(model, order([backup, LambdaCallback(on_epoch_begin=lambda e, logs=None: epochs_run.append(e))]
                                          + extra()))
    assert epochs_run == [2, 3, 4]
    assert resumed.epoch == reference.epoch == [0, 1, 2, 3, 4]
    assert resumed.history == reference.history
    assert_weights_equal(model.get_weights(), reference_model.get_weights())
    assert model.optimizer.iterations == reference_model.optimizer.iterations
    assert not (tmp_path / "backup").exists()  # deleted after a normal end


def test_backup_history_side_file_counts_only_for_its_own_backup(tmp_path):
    reference = fit_for_backup(backup_model(), [LearningRateScheduler(schedule)])
    folder = tmp_path / "backup"
    for same_id in (True, False):
        with pytest.raises(KeyboardInterrupt):
            fit_for_backup(backup_model(), [BackupAndRestore(folder), Crash(epoch=2, batch=0),
                                            LearningRateScheduler(schedule)])
        side_path = folder / "latest.history.json"
        side = json.loads(side_path.read_text())
        side["history"]["history"]["loss"] = [-1.0, -1.0]  # recognisable
        if not same_id:  # as if left over from an older backup
            side["backup_id"] = "0" * 32
        side_path.write_text(json.dumps(side))
        resumed = fit_for_backup(backup_model(), [BackupAndRestore(folder), LearningRateScheduler(schedule)])
        if same_id:
            assert resumed.history["loss"][:2] == [-1.0, -1.0]
        else:  # the History stored in the backup itself
            assert resumed.history["loss"] == reference.history["loss"]


def test_backup_survives_a_crash_while_writing_and_double_checkpoint(tmp_path, monkeypatch):
    reference_model = backup_model()
    reference = fit_for_backup(reference_model, [])

    model = backup_model()
    folder = tmp_path / "backup"
    backup = BackupAndRestore(folder, double_checkpoint=True)

    class BreakBackupAfterEpoch(Callback):  # runs before BackupAndRestore writes epoch 3's backup
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                monkeypatch.setattr(model, "get_weights", lambda: (_ for _ in ()).throw(OSError("disk full")))

    with pytest.raises(OSError, match="disk full"):
        fit_for_backup(model, [BreakBackupAfterEpoch(), backup])
    monkeypatch.undo()
    assert sorted(os.listdir(folder)) == ["latest.backup.h5", "latest.backup.h5.bkp"]  # no temp file left
    # Corrupt the latest backup: the previous one is used, with a warning.
    (folder / "latest.backup.h5").write_bytes(b"garbage")
    epochs_run = []
    with pytest.warns(UserWarning, match="unreadable.*using the previous one"):
        resumed = fit_for_backup(model, [backup, LambdaCallback(on_epoch_begin=lambda e, logs=None: epochs_run.append(e))])
    assert epochs_run == [2, 3, 4]  # the previous backup was taken just before the failed write
    assert resumed.history == reference.history
    assert_weights_equal(model.get_weights(), reference_model.get_weights())


def test_backup_every_n_batches_reruns_the_interrupted_epoch(tmp_path):
    model = backup_model()
    folder = tmp_path / "backup"
    saved = {}

    class Spy(Callback):  # after the backup: what did the last batch backup hold?
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                saved["weights"] = model.get_weights()

    # 24 train samples / 8 = 3 batches per epoch; save_freq=2 -> backups at epoch 0 batch 1, epoch 1 batches 0, 2...
    with pytest.raises(KeyboardInterrupt):
        fit_for_backup(model, [BackupAndRestore(folder, save_freq=2, delete_checkpoint=False), Spy(),
                               Crash(epoch=2, batch=2)])
    fresh = backup_model(seed=99)
    epochs_run = []
    backup = BackupAndRestore(folder, save_freq=2, delete_checkpoint=False)
    backup.set_model(fresh)
    fresh.history = History()
    backup.on_train_begin()
    assert fresh._initial_epoch == 2  # epoch 2 was not finished: it is run again
    assert_weights_equal(fresh.get_weights(), saved["weights"])  # from epoch 2, batch 1
    fit_for_backup(fresh, [backup, LambdaCallback(on_epoch_begin=lambda e, logs=None: epochs_run.append(e))])
    assert epochs_run == [2, 3, 4]
    assert (folder / "latest.backup.h5").exists()  # delete_checkpoint=False


def test_backup_errors_name_the_problem(tmp_path):
    folder = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        fit_for_backup(backup_model(), [BackupAndRestore(folder), Crash(epoch=1, batch=0)])
    other = tlkit.Sequential([tlkit.Input((4,)), L.Dense(1)])
    other.compile("sgd", "mse")
    with pytest.raises(ValueError, match="delete .*backup to start training afresh"):
        fit_for_backup(other, [BackupAndRestore(folder)])
    unbuilt = tlkit.Sequential([L.Dense(1)])
    unbuilt.compile("sgd", "mse")
    with pytest.raises(ValueError, match="must be built before you call `fit\\(\\)`"):
        fit_for_backup(unbuilt, [BackupAndRestore(folder)])
    with pytest.raises(ValueError, match="save_freq"):
        BackupAndRestore(folder, save_freq="batch")
    with pytest.raises(ValueError, match="Empty `backup_dir`"):
        BackupAndRestore("")


def test_backup_deletes_only_its_own_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    fit_for_backup(backup_model(), [BackupAndRestore(tmp_path)], epochs=2)
    assert os.listdir(tmp_path) == ["notes.txt"]
