"""TensorBoard callback: event files read back by the tensorboard package's own reader."""
import json
import os
import sys

import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine import optimizers

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

from tlkit.callbacks import TensorBoard  # noqa: E402


def _read(directory):
    acc = event_accumulator.EventAccumulator(directory, size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def _scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _fit(tmp_path, epochs=4, **tb):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    tlkit.utils.set_random_seed(0)
    model = tlkit.Sequential([tlkit.Input((5,)), L.Dense(4, activation="relu", name="hidden"),
                              L.Dense(1, activation="sigmoid", name="out")])
    schedule = optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.9)
    model.compile(optimizer=optimizers.SGD(learning_rate=schedule), loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=10, epochs=epochs, verbose=0, validation_data=(x[:20], y[:20]),
                        callbacks=[TensorBoard(str(tmp_path / "logs"), **tb)])
    return model, history.history


def test_epoch_scalars_in_train_and_validation_like_keras(tmp_path):
    model, history = _fit(tmp_path, histogram_freq=2)
    train, val = _read(str(tmp_path / "logs" / "train")), _read(str(tmp_path / "logs" / "validation"))
    for key in ("loss", "accuracy"):
        steps_values = _scalars(train, f"epoch_{key}")
        assert [s for s, _ in steps_values] == [0, 1, 2, 3]
        np.testing.assert_allclose([v for _, v in steps_values], history[key], rtol=1e-6)
        val_values = _scalars(val, f"epoch_{key}")
        np.testing.assert_allclose([v for _, v in val_values], history[f"val_{key}"], rtol=1e-6)
    # Learning rate at each epoch's end: 4 steps per epoch of an exponential decay by 0.9 per step.
    lr = _scalars(train, "epoch_learning_rate")
    np.testing.assert_allclose([v for _, v in lr], [0.1 * 0.9 ** (4 * (e + 1)) for e in range(4)], rtol=1e-5)
    # Evaluations against optimizer iterations, as Keras.
    assert [s for s, _ in _scalars(val, "evaluation_loss_vs_iterations")] == [4, 8, 12, 16]
    assert "batch_loss" not in train.Tags()["scalars"]  # update_freq="epoch"


def test_histograms_of_weights_and_gradients_at_the_requested_frequency(tmp_path):
    model, _ = _fit(tmp_path, epochs=5, histogram_freq=2)
    train = _read(str(tmp_path / "logs" / "train"))
    tags = set(train.Tags()["histograms"])
    expected = {f"{layer}/{w}/{kind}" for layer in ("hidden", "out") for w in ("kernel", "bias")
                for kind in ("histogram", "gradient")}
    assert tags == expected
    for tag in expected:
        assert [e.step for e in train.Histograms(tag)] == [0, 2, 4]
    # The last weight histogram describes the final weights.
    kernel = model.get_layer("out").get_weights()[0]
    last = train.Histograms("out/kernel/histogram")[-1].histogram_value
    assert last.num == kernel.size
    np.testing.assert_allclose([last.min, last.max, last.sum], [kernel.min(), kernel.max(), kernel.sum()], rtol=1e-5)


def test_batch_scalars_every_update_freq_global_batches(tmp_path):
    _, history = _fit(tmp_path, epochs=3, update_freq=3)
    train = _read(str(tmp_path / "logs" / "train"))
    # 4 batches per epoch, 12 in all, counted from 1: written at 3, 6, 9, 12.
    assert [s for s, _ in _scalars(train, "batch_loss")] == [3, 6, 9, 12]
    lr = _scalars(train, "batch_learning_rate")
    np.testing.assert_allclose([v for _, v in lr], [0.1 * 0.9 ** s for s in (3, 6, 9, 12)], rtol=1e-5)
    # At the epoch's last batch the running loss is the epoch's loss.
    np.testing.assert_allclose(_scalars(train, "batch_loss")[-1][1], history["loss"][-1], rtol=1e-6)


def test_model_graph_is_the_keras_conceptual_graph(tmp_path):
    model, _ = _fit(tmp_path, epochs=1)
    train = _read(str(tmp_path / "logs" / "train"))
    assert "keras" in train.Tags()["tensors"]
    event = train.Tensors("keras")[0]
    config = json.loads(event.tensor_proto.string_val[0])
    assert [layer["config"]["name"] for layer in config["config"]["layers"]][-2:] == ["hidden", "out"]
    assert train.SummaryMetadata("keras").plugin_data.plugin_name == "graph_keras_model"


def test_unsupported_arguments_warn_and_bad_ones_raise(tmp_path):
    with pytest.warns(UserWarning, match="write_images"):
        TensorBoard(str(tmp_path), write_images=True)
    with pytest.raises(ValueError, match="update_freq"):
        TensorBoard(str(tmp_path), update_freq="often")


def test_missing_tensorboardx_gives_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"pip install 'tlkit\[tensorboard\]'"):
        TensorBoard(str(tmp_path))
