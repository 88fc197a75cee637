"""ResourceMonitor: resource usage in the epoch logs, History, CSV, progress bar and TensorBoard."""
import csv
import os

import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.callbacks import Callback, CSVLogger, ResourceMonitor
from tlkit.utils import resources

KEYS = {"data_time", "compute_time", "epoch_time", "images_per_sec", "cpu_percent"}


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Batches:
    """Batches of 8 (the last of 4) whose fetch takes 3 fake seconds."""

    def __init__(self, clock, n=20, batch=8):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((n, 4)).astype(np.float32)
        self.y = rng.standard_normal((n, 1)).astype(np.float32)
        self.clock, self.batch = clock, batch

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __getitem__(self, i):
        self.clock.now += 3.0
        s = slice(i * self.batch, (i + 1) * self.batch)
        return self.x[s], self.y[s]


class Compute(Callback):
    """Placed before the monitor: each step 'takes' 7 fake seconds."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_train_batch_end(self, batch, logs=None):
        self.clock.now += 7.0


def _model():
    tlkit.utils.set_random_seed(0)
    model = tlkit.Sequential([tlkit.Input((4,)), L.Dense(3, activation="relu"), L.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_data_and_compute_time_and_throughput_split_as_reported_by_the_clock(tmp_path):
    clock = FakeClock()
    monitor = ResourceMonitor(clock=clock)
    history = _model().fit(Batches(clock), epochs=2, verbose=0,
                           callbacks=[Compute(clock), monitor, CSVLogger(str(tmp_path / "log.csv"))])
    for epoch in monitor.epochs:
        assert epoch["data_time"] == pytest.approx(3 * 3) and epoch["compute_time"] == pytest.approx(3 * 7)
        assert epoch["images_per_sec"] == pytest.approx(20 / 30)  # 20 samples in 30 fake seconds
        assert epoch["epoch_time"] >= 30
    assert KEYS <= set(history.history)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[1]["data_time"]) == pytest.approx(9.0)


def test_memory_and_cpu_are_plausible_and_match_the_stdlib_readers():
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    monitor = ResourceMonitor(per_core=True)
    history = _model().fit(x, x[:, :1], batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
    logs = {k: v[-1] for k, v in history.history.items()}
    assert logs["cpu_percent"] >= 0
    assert logs["images_per_sec"] > 0
    assert logs["data_time"] + logs["compute_time"] <= logs["epoch_time"] + 1e-9
    peak = resources.peak_rss_bytes()
    if peak is not None:
        assert 0 < logs["memory_peak_mb"] <= peak / 2 ** 20 + 64
    rss = resources.rss_bytes()
    if rss is not None:
        big = np.ones(64 * 2 ** 20 // 8)  # 64 MB more, resident: the reader sees it
        assert resources.rss_bytes() - rss > 32 * 2 ** 20
        del big
        assert logs["memory_rss_mb"] <= logs["memory_peak_mb"] + 1e-6
    cores = [k for k in logs if k.startswith("cpu_core")]
    if resources.core_times() is not None:
        assert len(cores) == os.cpu_count() or len(cores) == len(resources.core_times())
        assert all(0 <= logs[k] <= 100 for k in cores)


def test_progress_bar_prints_them_at_the_epoch_end(capsys):
    x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    _model().fit(x, x[:, :1], batch_size=16, epochs=1, verbose=2, callbacks=[ResourceMonitor()])
    out = capsys.readouterr().out
    assert "images_per_sec" in out and "data_time" in out


def test_tensorboard_records_them_as_epoch_scalars(tmp_path):
    pytest.importorskip("tensorboardX")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from tlkit.callbacks import TensorBoard

    x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    history = _model().fit(x, x[:, :1], batch_size=16, epochs=2, verbose=0,
                           callbacks=[ResourceMonitor(), TensorBoard(str(tmp_path))])
    acc = accumulator.EventAccumulator(str(tmp_path / "train"))
    acc.Reload()
    values = [e.value for e in acc.Scalars("epoch_images_per_sec")]
    np.testing.assert_allclose(values, history.history["images_per_sec"], rtol=1e-6)
    assert "epoch_memory_peak_mb" in acc.Tags()["scalars"]
