"""The .keras model file (Keras 3's zip): tlkit's round trip, a file in Keras 3's exact layout built by
hand (always runs), files written by Keras 3 itself and tlkit's files read by Keras 3 (peers' Python, skipped
without it), hostile zips, atomic writes, Loss objects and custom objects."""
import io
import json
import os
import subprocess
import textwrap
import zipfile

import h5py
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.saving.errors import ModelFileError, UnreadableFileError

PEERS_PYTHON = os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python")


@pytest.fixture(autouse=True)
def _registry_restored():
    """Registrations are global: each test's own go away with it."""
    registry = tlkit.utils.get_custom_objects()
    saved = dict(registry)
    yield
    registry.clear()
    registry.update(saved)


def nested_model():
    """A functional model with a functional sub-model used as a layer, as the functional API guide's."""
    inner_in = tlkit.Input((6,), name="inner_in")
    inner = tlkit.Model(inner_in, L.Dense(5, activation="relu", name="inner_dense")(inner_in), name="inner")
    inp = tlkit.Input((6,), name="x")
    a = inner(inp)
    b = L.Dense(5, activation="tanh", name="side")(inp)
    out = L.Dense(2, name="head")(L.concatenate([a, b]))
    return tlkit.Model(inp, out, name="outer")


def data(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x[:, :2] * 0.5 - x[:, 2:4]).astype("float32")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_round_trip_keeps_weights_compile_and_optimizer_state(tmp_path, suffix):
    model = nested_model()
    model.compile(optimizer="adam", loss=tlkit.losses.MeanSquaredError(), metrics=["mae"])
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / f"m{suffix}"
    model.save(path)
    if suffix == ".keras":
        assert zipfile.ZipFile(path).namelist() == ["metadata.json", "config.json", "model.weights.h5"]
    loaded = tlkit.models.load_model(path)
    assert len(loaded.weights) == len(model.weights) == 6  # the sub-model's weights come back too
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 8
    # Training continues exactly where it stopped: the Adam moments came back.
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == [f"m{suffix}"]  # nothing extracted, no temporary left


def test_sequential_round_trip_and_metadata(tmp_path):
    model = tlkit.Sequential([tlkit.Input((6,)), L.Dense(4, activation="relu"), L.Dense(2)], name="seq")
    model.save(tmp_path / "s.keras", metadata={"classes": ["a", "b"]})
    loaded = tlkit.models.load_model(tmp_path / "s.keras")
    assert type(loaded).__name__ == "Sequential" and [type(l).__name__ for l in loaded.layers] == ["Dense", "Dense"]
    assert loaded.metadata == {"classes": ["a", "b"]}
    fresh = tlkit.Sequential([tlkit.Input((6,)), L.Dense(4, activation="relu"), L.Dense(2)])
    fresh.load_weights(tmp_path / "s.keras")  # the weights alone, as Keras 3 allows
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x, _ = data(4)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_wrappers_are_written_in_keras3_layout(tmp_path):
    """Bidirectional and TimeDistributed as Keras 3 writes them (checked against Keras 3.15's own files in
    the oracle test below): inner layers in their own envelopes, variables in the inner layers' groups."""
    model = tlkit.Sequential([tlkit.Input((5, 3)), L.Bidirectional(L.LSTM(4, return_sequences=True)),
                              L.TimeDistributed(L.Dense(2))])
    model.save(tmp_path / "w.keras")
    with zipfile.ZipFile(tmp_path / "w.keras") as z:
        config = json.loads(z.read("config.json"))
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
            shapes = {}
            f.visititems(lambda name, obj: shapes.update({name: obj.shape}) if isinstance(obj, h5py.Dataset) else None)
    bidirectional, time_distributed = config["config"]["layers"][1:]
    for inner in (bidirectional["config"]["layer"], time_distributed["config"]["layer"]):
        assert inner["module"] == "keras.layers" and "registered_name" in inner
    forward, backward = model.layers[0].forward_layer, model.layers[0].backward_layer
    expected = {f"layers/bidirectional/{side}/cell/vars/{i}": tuple(w.shape)
                for side, layer in (("forward_layer", forward), ("backward_layer", backward))
                for i, w in enumerate(layer.weights)}
    expected.update({f"layers/time_distributed/layer/vars/{i}": tuple(w.shape)
                     for i, w in enumerate(model.layers[1].layer.weights)})
    assert shapes == expected
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    loaded = tlkit.models.load_model(tmp_path / "w.keras")
    for a, b in zip(loaded.get_weights(), model.get_weights()):  # forward copy's weights before the backward's
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)


# --- a file in Keras 3's exact layout, built by hand -------------------------------------------------

def _keras_tensor(name, shape):
    return {"class_name": "__keras_tensor__", "config": {"shape": shape, "dtype": "float32",
                                                         "keras_history": [name, 0, 0]}}


def _keras3_dense(name, units, activation, source, in_dim):
    init = lambda cls: {"module": "keras.initializers", "class_name": cls, "registered_name": None,
                        "config": {"seed": None} if cls != "Zeros" else {}}
    return {"module": "keras.layers", "class_name": "Dense", "registered_name": None, "name": name,
            "build_config": {"input_shape": [None, in_dim]},
            "config": {"name": name, "trainable": True, "units": units, "activation": activation, "use_bias": True,
                       "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                                 "registered_name": None},
                       "kernel_initializer": init("GlorotUniform"), "bias_initializer": init("Zeros"),
                       "kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None,
                       "bias_constraint": None, "quantization_config": None},
            "inbound_nodes": [{"args": [_keras_tensor(source, [None, in_dim])], "kwargs": {}}]}


def keras3_file(path, kernels):
    """What Keras 3.15 writes for Input(4) -> Dense(3, relu) -> Dense(2), compiled with Adam and a Loss object."""
    config = {
        "module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
        "build_config": {"input_shape": None},
        "config": {"name": "functional", "trainable": True, "input_layers": ["x", 0, 0],
                   "output_layers": ["dense_1", 0, 0], "layers": [
                       {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None, "name": "x",
                        "config": {"batch_shape": [None, 4], "dtype": "float32", "sparse": False, "ragged": False,
                                   "name": "x", "optional": False}, "inbound_nodes": []},
                       _keras3_dense("dense", 3, "relu", "x", 4), _keras3_dense("dense_1", 2, "linear", "dense", 3)]},
        "compile_config": {
            "optimizer": {"module": "keras.optimizers", "class_name": "Adam", "registered_name": None,
                          "config": {"name": "adam", "learning_rate": 0.002, "weight_decay": None, "clipnorm": None,
                                     "global_clipnorm": None, "clipvalue": None, "use_ema": False,
                                     "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                                     "loss_scale_factor": None, "gradient_accumulation_steps": None,
                                     "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}},
            "loss": {"module": "keras.losses", "class_name": "MeanSquaredError", "registered_name": None,
                     "config": {"name": "mean_squared_error", "reduction": "sum_over_batch_size"}},
            "loss_weights": None, "metrics": ["mae"], "weighted_metrics": None, "run_eagerly": False,
            "steps_per_execution": 1, "jit_compile": False}}
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        f.create_group("vars").attrs["name"] = "functional"
        f.create_group("layers/input_layer/vars").attrs["name"] = "x"
        for key, arrays in (("dense", kernels[:2]), ("dense_1", kernels[2:])):
            g = f.create_group(f"layers/{key}/vars")
            g.attrs["name"] = key
            for i, a in enumerate(arrays):
                g.create_dataset(str(i), data=a)
        f.create_group("optimizer/vars").attrs["name"] = "adam"
        f["optimizer/vars/0"] = np.int64(0)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1", "date_saved": "2026-11-26@15:46:06"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights.getvalue())
    return path


def test_reads_a_file_in_keras3_layout(tmp_path):
    rng = np.random.default_rng(1)
    kernels = [rng.normal(size=s).astype("float32") for s in ((4, 3), (3,), (3, 2), (2,))]
    model = tlkit.models.load_model(keras3_file(tmp_path / "k.keras", kernels))
    x = rng.normal(size=(5, 4)).astype("float32")
    expected = np.maximum(x @ kernels[0] + kernels[1], 0) @ kernels[2] + kernels[3]  # numpy reference
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert [l.name for l in model.layers] == ["x", "dense", "dense_1"]
    assert type(model.optimizer).__name__ == "Adam" and np.isclose(float(model.optimizer.learning_rate), 0.002)
    history = model.fit(x, expected + 1.0, epochs=3, verbose=0)  # compiled from the file: it trains
    assert history.history["loss"][-1] < history.history["loss"][0] and "mae" in history.history


def test_a_keras3_option_tlkit_lacks_is_refused_not_dropped(tmp_path):
    path = keras3_file(tmp_path / "k.keras", [np.ones(s, "float32") for s in ((4, 3), (3,), (3, 2), (2,))])
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["config"]["kernel_constraint"] = {"class_name": "NonNeg", "config": {}}
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data_ in members.items():
            z.writestr(name, data_)
    with pytest.raises(ModelFileError, match="kernel_constraint"):
        tlkit.models.load_model(path)


# --- Keras 3 itself (optional oracle) ---------------------------------------------------------------

KERAS_WRITES = r'''
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras
from keras import layers
folder = sys.argv[1]
x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
inner_in = keras.Input((6,))
inner = keras.Model(inner_in, layers.Dense(5, activation="relu")(inner_in))
inp = keras.Input((6,))
out = layers.Dense(2)(layers.concatenate([inner(inp), layers.Dense(5, activation="tanh")(inp)]))
model = keras.Model(inp, out)
model.compile(optimizer="adam", loss=keras.losses.MeanSquaredError(), metrics=["mae"])
model.fit(x, x[:, :2], epochs=1, verbose=0)
model.save(os.path.join(folder, "functional.keras"))
seq = keras.Sequential([keras.Input((6,)), layers.Dense(4, activation="relu"), layers.Dense(3, activation="softmax")])
seq.save(os.path.join(folder, "sequential.keras"))
i = keras.Input((12, 12, 3))
c = layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", activation="relu")(i))
c = layers.MaxPooling2D()(layers.add([c, layers.Conv2D(8, 1)(c)]))
c = layers.concatenate([c, layers.AveragePooling2D(2)(layers.Conv2D(4, 3, padding="same")(i))])
c = layers.SeparableConv2D(6, 3)(layers.DepthwiseConv2D(3, padding="same")(c))
c = layers.LayerNormalization()(layers.Dropout(0.3)(layers.GlobalAveragePooling2D()(c)))
cnn = keras.Model(i, layers.Dense(3, activation="softmax")(c))
cnn.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
images = np.random.default_rng(1).random((4, 12, 12, 3)).astype("float32")
cnn.fit(images, np.array([0, 1, 2, 1]), verbose=0)
cnn.save(os.path.join(folder, "cnn.keras"))
rnn = keras.Sequential([keras.Input((7, 3)), layers.LSTM(5, return_sequences=True), layers.GRU(4), layers.Dense(2)])
rnn.save(os.path.join(folder, "rnn.keras"))
wrapped = keras.Sequential([keras.Input((7, 3)), layers.Bidirectional(layers.LSTM(4, return_sequences=True)),
                            layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode="sum"),
                            layers.TimeDistributed(layers.Dense(2))])
wrapped.save(os.path.join(folder, "wrapped.keras"))
steps = np.random.default_rng(2).random((2, 7, 3)).astype("float32")
np.save(os.path.join(folder, "wrapped_x.npy"), steps)
for name, model_, data_ in (("cnn", cnn, images), ("rnn", rnn, steps), ("wrapped", wrapped, steps)):
    np.save(os.path.join(folder, name + "_x.npy"), data_)
    np.save(os.path.join(folder, name + ".npy"), model_.predict(data_, verbose=0))
np.save(os.path.join(folder, "x.npy"), x)
np.save(os.path.join(folder, "functional.npy"), model.predict(x, verbose=0))
np.save(os.path.join(folder, "sequential.npy"), seq.predict(x, verbose=0))
if len(sys.argv) > 2:  # read tlkit's file and predict
    theirs = keras.models.load_model(sys.argv[2])
    np.save(os.path.join(folder, "keras_reads_tlkit.npy"), theirs.predict(x, verbose=0))
'''


# Keras reads files tlkit wrote and saves its predictions beside them.
KERAS_READS = r'''
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras
for path, inputs in zip(sys.argv[2::2], sys.argv[3::2]):
    np.save(path + ".keras_predicts.npy", keras.models.load_model(path).predict(np.load(inputs), verbose=0))
'''


def run_keras(tmp_path, *args, script_text=KERAS_WRITES):
    if not os.path.exists(PEERS_PYTHON):
        pytest.skip(f"Keras 3 (the peers' Python {PEERS_PYTHON}) is absent")
    script = tmp_path / "keras_side.py"
    script.write_text(textwrap.dedent(script_text))
    done = subprocess.run([PEERS_PYTHON, str(script), str(tmp_path), *map(str, args)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    if done.returncode != 0 and "No module named 'keras'" in done.stderr:
        pytest.skip("Keras is not installed in the peers' Python")
    assert done.returncode == 0, done.stderr[-3000:]


def test_keras3_files_load_and_tlkit_files_load_in_keras3(tmp_path):
    mine = nested_model()
    mine.compile(optimizer="adam", loss=tlkit.losses.MeanSquaredError())
    mine.save(tmp_path / "tlkit.keras")
    run_keras(tmp_path, tmp_path / "tlkit.keras")
    x = np.load(tmp_path / "x.npy")
    for name in ("functional", "sequential", "cnn", "rnn", "wrapped"):  # Keras 3 configs of the common layers
        model = tlkit.models.load_model(tmp_path / f"{name}.keras")
        inputs = np.load(tmp_path / f"{name}_x.npy") if name in ("cnn", "rnn", "wrapped") else x
        np.testing.assert_allclose(model.predict(inputs, verbose=0), np.load(tmp_path / f"{name}.npy"), rtol=1e-5,
                                   atol=1e-6)
    assert type(tlkit.models.load_model(tmp_path / "cnn.keras").optimizer).__name__ == "Adam"
    # ...and Keras 3 reads them back from tlkit's own files (a recurrent layer's weights in its cell's group,
    # a wrapper's inner layers with their envelopes and weight groups).
    names = ("cnn", "rnn", "wrapped")
    for name in names:
        tlkit.models.load_model(tmp_path / f"{name}.keras").save(tmp_path / f"tlkit_{name}.keras")
    run_keras(tmp_path, *[str(tmp_path / p) for n in names for p in (f"tlkit_{n}.keras", f"{n}_x.npy")],
              script_text=KERAS_READS)
    for name in names:
        np.testing.assert_allclose(np.load(tmp_path / f"tlkit_{name}.keras.keras_predicts.npy"),
                                   np.load(tmp_path / f"{name}.npy"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "keras_reads_tlkit.npy"), mine.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)


# --- bad and hostile files --------------------------------------------------------------------------

def one_line_refusal(path, match):
    with pytest.raises(UnreadableFileError, match=match) as e:
        tlkit.models.load_model(path)
    assert "\n" not in str(e.value)


def test_hostile_and_damaged_zips_are_refused_in_one_line(tmp_path):
    good = tmp_path / "good.keras"
    tlkit.Sequential([tlkit.Input((3,)), L.Dense(2)]).save(good)
    members = {n: zipfile.ZipFile(good).read(n) for n in zipfile.ZipFile(good).namelist()}

    traversal = tmp_path / "traversal.keras"
    with zipfile.ZipFile(traversal, "w") as z:
        for name, payload in members.items():
            z.writestr(name, payload)
        z.writestr("../../evil.py", "import os")
    one_line_refusal(traversal, "outside the archive")
    assert not (tmp_path.parent / "evil.py").exists()

    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", members["metadata.json"])
        z.writestr("config.json", b" " * (80 << 20) + b"{}")  # 80 MB of blanks: over the JSON limit
        z.writestr("model.weights.h5", members["model.weights.h5"])
    one_line_refusal(bomb, "config.json")

    missing = tmp_path / "missing.keras"
    with zipfile.ZipFile(missing, "w") as z:
        z.writestr("config.json", members["config.json"])
    one_line_refusal(missing, "no model.weights.h5")

    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[:200])
    one_line_refusal(truncated, "truncated.keras")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    model = tlkit.Sequential([tlkit.Input((3,)), L.Dense(2)])
    model.save(path)
    before = path.read_bytes()
    from tlkit.engine.saving import keras_zip

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras_zip, "write_keras3_layers", fail)
    with pytest.raises(OSError):
        model.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.keras"]


# --- Loss objects and custom objects (HDF5 and .keras) -----------------------------------------------

@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_loss_objects_and_custom_objects_come_back(tmp_path, suffix):
    @tlkit.utils.register_keras_serializable(package="tests")
    class Scale(L.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, inputs):
            return inputs * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    def halved_mse(y_true, y_pred):
        return tlkit.ops.mean(tlkit.ops.square(y_true - y_pred), axis=-1) * 0.5

    inp = tlkit.Input((6,))
    model = tlkit.Model(inp, Scale(3.0)(L.Dense(2)(inp)))
    model.compile(optimizer="sgd", loss=tlkit.losses.Huber(delta=0.5), metrics=["mae"])
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / f"m{suffix}")
    loaded = tlkit.models.load_model(tmp_path / f"m{suffix}")  # Scale found through the registry
    assert type(loaded.layers[-1]) is Scale and loaded.layers[-1].factor == 3.0
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-6)

    model.compile(optimizer="sgd", loss=halved_mse)
    model.save(tmp_path / f"f{suffix}")
    loaded = tlkit.models.load_model(tmp_path / f"f{suffix}", custom_objects={"halved_mse": halved_mse})
    expected = float(np.mean((model.predict(x, verbose=0) - y) ** 2) * 0.5)
    assert np.isclose(loaded.evaluate(x, y, verbose=0), expected, rtol=1e-5)


def test_save_says_what_each_name_gets(tmp_path):
    model = tlkit.Sequential([tlkit.Input((3,)), L.Dense(2)])
    with pytest.raises(ValueError, match=r"use a name ending in .keras or .h5, or model.save_weights"):
        model.save(tmp_path / "m.weights.h5")
    with pytest.warns(UserWarning, match=r"gets an HDF5 file .* name it .keras"):
        model.save(tmp_path / "m.model")
    assert h5py.is_hdf5(tmp_path / "m.model")
    with pytest.raises(ValueError, match=r"save_weights writes HDF5 weight files: use a path ending in .weights.h5"):
        model.save_weights(tmp_path / "w.keras")
    x = np.ones((1, 3), "float32")
    np.testing.assert_allclose(tlkit.models.load_model(tmp_path / "m.model").predict(x, verbose=0),
                               model.predict(x, verbose=0))
