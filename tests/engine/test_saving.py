"""model.save / load_model / save_weights / load_weights: round trips, resuming, Keras files, bad files."""
import json
import os

import h5py
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.saving.hdf5 import ModelFileError


def functional_model():
    inp = tlkit.Input((6, 6, 3), name="img")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    left = L.Conv2D(2, 1, activation="relu", name="left")(x)
    right = L.Conv2D(2, 3, padding="same", activation="relu", name="right")(x)
    x = L.GlobalAveragePooling2D()(L.Concatenate()([left, right]))
    out = L.Dense(3, activation="softmax", name="out")(L.Dropout(0.2)(x))
    return tlkit.Model(inp, out, name="fire")


def sequential_model():
    return tlkit.Sequential([tlkit.Input((6, 6, 3)), L.Conv2D(4, 3, activation="relu", kernel_regularizer="l2"),
                             L.AveragePooling2D(), L.Flatten(), L.Dense(3, activation="softmax")], name="seq")


class Subclassed(tlkit.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(4, 3, activation="relu")
        self.pool = L.GlobalMaxPooling2D()
        self.head = L.Dense(3, activation="softmax")

    def call(self, inputs, training=False):
        return self.head(self.pool(self.conv(inputs)))


@pytest.fixture
def data(rng):
    x = rng.standard_normal((24, 6, 6, 3)).astype(np.float32)
    return x, (x[..., 0].mean(axis=(1, 2)) > 0).astype(int) + (x[..., 1].mean(axis=(1, 2)) > 0)


@pytest.mark.parametrize("factory", [functional_model, sequential_model])
def test_save_load_round_trip_keeps_predictions_and_compile(tmp_path, data, factory):
    x, y = data
    model = factory()
    model.compile(tlkit.optimizers.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "m.h5"
    model.save(path, metadata={"classes": ["a", "b", "c"]})
    loaded = tlkit.models.load_model(path)
    assert type(loaded) is type(model) and [l.name for l in loaded.layers] == [l.name for l in model.layers]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert loaded.metadata == {"classes": ["a", "b", "c"]}
    assert type(loaded.optimizer).__name__ == "Adam" and np.isclose(loaded.optimizer.learning_rate, 0.01)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)


@pytest.mark.parametrize("factory", [functional_model, sequential_model])
def test_train_save_load_train_equals_training_straight(tmp_path, data, factory):
    x, y = data

    def fresh():
        tlkit.utils.set_random_seed(3)
        m = factory()
        m.compile(tlkit.optimizers.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
        return m

    straight = fresh()
    straight.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    first = fresh()
    first.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    first.save(tmp_path / "m.h5")
    resumed = tlkit.models.load_model(tmp_path / "m.h5")
    resumed.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_subclassed_model_saves_and_loads_weights(tmp_path, data):
    x, _ = data
    model = Subclassed()
    expected = model.predict(x, verbose=0)
    model.save_weights(tmp_path / "w.h5")
    other = Subclassed()
    other.build((None, 6, 6, 3))
    assert not np.allclose(other.predict(x, verbose=0), expected)
    other.load_weights(tmp_path / "w.h5")
    np.testing.assert_array_equal(other.predict(x, verbose=0), expected)


def test_load_weights_by_name_and_skip_mismatch(tmp_path, data):
    x, _ = data
    source = functional_model()
    source.save_weights(tmp_path / "w.h5")
    # A model sharing some layer names, in another order, with one layer of another shape.
    inp = tlkit.Input((6, 6, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    out = L.Dense(5, name="out")(L.GlobalAveragePooling2D()(a))
    target = tlkit.Model(inp, out)
    with pytest.raises(ValueError, match="out"):
        target.load_weights(tmp_path / "w.h5", by_name=True)
    target.load_weights(tmp_path / "w.h5", by_name=True, skip_mismatch=True)
    np.testing.assert_array_equal(target.get_layer("conv").get_weights()[0], source.get_layer("conv").get_weights()[0])
    assert target.get_layer("out").get_weights()[0].shape == (4, 5)


def test_loads_keras2_legacy_weight_file(tmp_path, rng):
    """A weights file in Keras 2's layout (as keras.Model.save_weights('x.h5') wrote it)."""
    model = tlkit.Sequential([tlkit.Input((5, 5, 2)), L.Conv2D(3, 3, name="c1"), L.Flatten(name="flat"),
                              L.Dense(2, name="d1")])
    kernel = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    dense = rng.standard_normal((27, 2)).astype(np.float32)
    dbias = rng.standard_normal(2).astype(np.float32)
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f.attrs["layer_names"] = np.array([b"c1", b"flat", b"d1"])
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.4.0"
        for name, arrays in (("c1", [kernel, bias]), ("flat", []), ("d1", [dense, dbias])):
            g = f.create_group(name)
            names = [f"{name}/{w}:0".encode() for w in ("kernel", "bias")][:len(arrays)]
            g.attrs["weight_names"] = np.array(names, dtype="S")
            for n, a in zip(names, arrays):
                g.create_dataset(n.decode(), data=a)
    model.load_weights(tmp_path / "k.h5")
    for got, want in zip(model.get_weights(), [kernel, bias, dense, dbias]):
        np.testing.assert_array_equal(got, want)


def test_failed_save_leaves_previous_file_intact(tmp_path, data, monkeypatch):
    model = functional_model()
    path = tmp_path / "m.h5"
    model.save(path)
    before = path.read_bytes()
    from tlkit.engine.saving import hdf5

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(hdf5, "write_layer_weights", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]  # no temporary file left behind
    tlkit.models.load_model(path)


def test_bad_model_files_get_clear_errors(tmp_path):
    model = functional_model()
    model.save(tmp_path / "good.h5")
    data = (tmp_path / "good.h5").read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFileError, match="truncated"):
        tlkit.models.load_model(tmp_path / "truncated.h5")
    (tmp_path / "text.h5").write_text("not a model")
    with pytest.raises(ModelFileError, match="not a readable HDF5"):
        tlkit.models.load_model(tmp_path / "text.h5")
    model.save_weights(tmp_path / "weights.h5")
    with pytest.raises(ModelFileError, match="load_weights"):
        tlkit.models.load_model(tmp_path / "weights.h5")
    with pytest.raises(FileNotFoundError):
        tlkit.models.load_model(tmp_path / "missing.h5")


def test_model_config_is_data_never_code(tmp_path):
    """A config naming an unknown layer (or a Lambda carrying code) is refused, nothing imported or run."""
    model = functional_model()
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][1]["class_name"] = "os.system"
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ValueError, match="os.system"):
        tlkit.models.load_model(tmp_path / "m.h5")
