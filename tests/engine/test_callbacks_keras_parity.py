"""EarlyStopping, ReduceLROnPlateau and ModelCheckpoint(save_best_only) against Keras itself.

Both sides get the same scripted monitor values, epoch by epoch, through the callback hooks; the
decisions (when to stop, which weights come back, the learning rates, which epochs are saved) and
the printed messages must match. Keras runs in the peers' Python (TLKIT_PEERS_PYTHON, default
/work/peers/bin/python); the test skips without it.
"""
import contextlib
import io
import json
import math
import os
import subprocess

import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau

PEERS_PYTHON = os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python")

# Drives Keras's callbacks; the same driver (drive() below) runs tlkit's.
KERAS_SIDE = r'''
import contextlib, io, json, os, sys, tempfile
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras

def drive(callback, values, monitor, model):
    callback.set_model(model)
    model.stop_training = False
    out, lrs, epochs = io.StringIO(), [], []
    with contextlib.redirect_stdout(out):
        callback.on_train_begin({})
        for epoch, value in enumerate(values):
            callback.on_epoch_begin(epoch, {})
            model.set_weights([np.full(w.shape, epoch, "float32") for w in model.get_weights()])
            logs = {"loss": 1.0, monitor: float("nan") if value is None else value}
            callback.on_epoch_end(epoch, logs)
            epochs.append(epoch)
            lrs.append(logs.get("learning_rate"))
            if model.stop_training:
                break
        callback.on_train_end({})
    return out.getvalue(), lrs, epochs

model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse", metrics=["accuracy"])
model.train_on_batch(np.zeros((2, 2), "float32"), np.zeros((2, 1), "float32"))  # builds the metrics
results = []
for case in json.load(sys.stdin):
    kind, kwargs, values = case["kind"], case["kwargs"], case["values"]
    monitor = kwargs.get("monitor", "val_loss")
    model.optimizer.learning_rate.assign(1.0)
    with tempfile.TemporaryDirectory() as folder:
        callback = getattr(keras.callbacks, kind)(os.path.join(folder, "e{epoch}.weights.h5"), **kwargs) \
            if kind == "ModelCheckpoint" else getattr(keras.callbacks, kind)(**kwargs)
        text, lrs, epochs = drive(callback, values, monitor, model)
        saved = sorted(int(name[1:-len(".weights.h5")]) for name in os.listdir(folder))
        text = text.replace(folder, "DIR")
    results.append({"epochs": epochs, "text": text, "lrs": lrs, "saved": saved,
                    "final_lr": float(model.optimizer.learning_rate.numpy()),
                    "weights_from": float(model.get_weights()[0].flat[0]),
                    "state": {k: getattr(callback, k, None) for k in ("stopped_epoch", "best_epoch", "wait", "best")}})
print(json.dumps(results))
'''


def drive(callback, values, monitor, model):
    callback.set_model(model)
    model.stop_training = False
    out, lrs, epochs = io.StringIO(), [], []
    with contextlib.redirect_stdout(out):
        callback.on_train_begin({})
        for epoch, value in enumerate(values):
            callback.on_epoch_begin(epoch, {})
            model.set_weights([np.full(w.shape, epoch, np.float32) for w in model.get_weights()])
            logs = {"loss": 1.0, monitor: math.nan if value is None else value}
            callback.on_epoch_end(epoch, logs)
            epochs.append(epoch)
            lrs.append(logs.get("learning_rate"))
            if model.stop_training:
                break
        callback.on_train_end({})
    return out.getvalue(), lrs, epochs


def make_cases(n=40, epochs=10):
    rng = np.random.default_rng(0)
    pool = [0.5, 1.0, 1.0 + 1e-5, 1.2, 1.5, 2.0]  # ties and near-ties on purpose
    cases = []
    for i in range(n):
        monitor = ["val_loss", "val_accuracy"][i % 2]  # "auto": min / max
        values = [float(v) for v in rng.choice(pool, epochs)]
        with_nan = [None if rng.random() < 0.15 else v for v in values]  # None = NaN (JSON has no NaN)
        mode = {"mode": str(rng.choice(["min", "max"]))} if i % 5 == 4 else {}
        cases.append({"kind": "EarlyStopping", "values": with_nan, "kwargs": {
            "monitor": monitor, "patience": int(rng.integers(0, 6)), "min_delta": [0, 0.3][i % 3 == 0],
            "baseline": [None, 1.2][i % 4 == 1], "start_from_epoch": [0, 2][i % 7 == 3],
            "restore_best_weights": bool(i % 2 == 0 or i % 3 == 0), "verbose": 1, **mode}})
        cases.append({"kind": "ReduceLROnPlateau", "values": with_nan, "kwargs": {
            "monitor": monitor, "factor": 0.5, "patience": int(rng.integers(0, 3)),
            "cooldown": int(rng.integers(0, 3)), "min_delta": [1e-4, 0.3][i % 3 == 0],
            "min_lr": [0.0, 0.125][i % 4 == 2], "verbose": 1, **mode}})
        cases.append({"kind": "ModelCheckpoint", "values": values, "kwargs": {  # NaN: tlkit differs on purpose
            "monitor": monitor, "save_best_only": True, "save_weights_only": True, "verbose": 1,
            "initial_value_threshold": [None, 1.2][i % 3 == 1], **mode}})
    return cases


def tiny_model():
    model = tlkit.Sequential([tlkit.Input((2,)), L.Dense(1)])
    model.compile(optimizer=tlkit.optimizers.SGD(1.0), loss="mse", metrics=["accuracy"])
    model.train_on_batch(np.zeros((2, 2), np.float32), np.zeros((2, 1), np.float32))  # builds the metrics
    return model


def run_tlkit(case, model, folder):
    kind, kwargs = case["kind"], case["kwargs"]
    model.optimizer.learning_rate = 1.0
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    classes = {"EarlyStopping": EarlyStopping, "ReduceLROnPlateau": ReduceLROnPlateau}
    callback = ModelCheckpoint(os.path.join(folder, "e{epoch}.weights.h5"), **kwargs) \
        if kind == "ModelCheckpoint" else classes[kind](**kwargs)
    text, lrs, epochs = drive(callback, case["values"], kwargs["monitor"], model)
    saved = sorted(int(name[1:-len(".weights.h5")]) for name in os.listdir(folder))
    return {"epochs": epochs, "text": text.replace(str(folder), "DIR"), "lrs": lrs, "saved": saved,
            "final_lr": model.optimizer.learning_rate, "weights_from": float(model.get_weights()[0].flat[0]),
            "state": {k: getattr(callback, k, None) for k in ("stopped_epoch", "best_epoch", "wait", "best")}}


def same(a, b):
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6)


@pytest.fixture(scope="module")
def keras_results():
    if not os.path.exists(PEERS_PYTHON):
        pytest.skip(f"no peers' Python at {PEERS_PYTHON} (set TLKIT_PEERS_PYTHON)")
    done = subprocess.run([PEERS_PYTHON, "-c", KERAS_SIDE], input=json.dumps(make_cases()), capture_output=True,
                          text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    if done.returncode != 0 and "No module named 'keras'" in done.stderr:
        pytest.skip("keras is not installed in the peers' Python")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN comparisons
def test_monitor_callbacks_decide_and_print_as_keras(keras_results, tmp_path):
    model = tiny_model()
    cases = make_cases()
    assert len(keras_results) == len(cases)
    for case, want in zip(cases, keras_results):
        got = run_tlkit(case, model, tmp_path)
        where = f"{case['kind']}({case['kwargs']}) on {case['values']}"
        assert got["epochs"] == want["epochs"], where
        assert got["saved"] == want["saved"], where
        assert got["weights_from"] == want["weights_from"], where
        assert all(same(g, w) for g, w in zip(got["lrs"], want["lrs"])) and same(got["final_lr"],
                                                                                 want["final_lr"]), where
        for key in ("stopped_epoch", "best_epoch", "wait"):
            assert got["state"][key] == want["state"][key], (key, where)
        assert same(got["state"]["best"], want["state"]["best"]), where
        assert got["text"] == want["text"], where
