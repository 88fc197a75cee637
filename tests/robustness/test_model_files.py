"""Damaged and hostile model files: refused with ModelFileError, never a raw h5py/numpy error."""
import json

import h5py
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.saving.hdf5 import ModelFileError


@pytest.fixture
def saved(tmp_path):
    model = tlkit.Sequential([tlkit.Input((5, 5, 2)), L.Conv2D(3, 3, name="conv"), L.Flatten(), L.Dense(2, name="d")])
    model.compile("adam", "mse")
    path = tmp_path / "m.h5"
    model.save(path)
    return path


def edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def test_truncated_anywhere_is_refused(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (0, 8, 100, 512, 2048, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.h5"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            tlkit.models.load_model(bad)


def _replace(group, name, data):
    del group[name]
    group.create_dataset(name, data=data)


@pytest.mark.parametrize("damage, message", [
    (lambda f: _replace(f["model_weights/conv"], "kernel", np.zeros((2, 2, 2, 3), np.float32)), "shape"),
    (lambda f: _replace(f["model_weights/conv"], "kernel", np.array([b"not", b"numbers"])), "conv"),
    (lambda f: f["model_weights/conv"].attrs.__setitem__("weight_names", np.array([b"kernel", b"gone"])), "gone"),
    (lambda f: f["model_weights"].attrs.__setitem__("layer_names", np.array([b"conv", b"ghost"])), "ghost"),
    (lambda f: f.attrs.__setitem__("model_config", "{not json"), "JSON"),
    (lambda f: f.attrs.__setitem__("model_config", json.dumps({"class_name": "Sequential"})), "different architecture"),
    (lambda f: f.attrs.__setitem__("model_config", json.dumps(
        {"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "Dense", "config": {"name": "d", "units": 10 ** 15}}]}})), "d"),
])
def test_semantic_damage_is_refused_clearly(saved, damage, message):
    edit(saved, damage)
    with pytest.raises(ModelFileError, match=message):
        tlkit.models.load_model(saved)


@pytest.mark.parametrize("class_name", ["Lambda", "builtins.eval", "os.system", "__import__"])
def test_config_that_names_code_is_refused_and_nothing_runs(saved, tmp_path, class_name):
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def inject(f):
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"].append({"class_name": class_name, "config": {
            "name": "evil", "function": payload, "module": "os", "registered_name": class_name}})
        f.attrs["model_config"] = json.dumps(config)

    edit(saved, inject)
    with pytest.raises(ModelFileError, match=class_name.split(".")[-1]):
        tlkit.models.load_model(saved)
    assert not marker.exists()


def test_weights_file_with_damaged_group_is_refused(saved, tmp_path):
    """The fuzzer's first find: a layer group h5py can't open raised a raw KeyError."""
    weights = tmp_path / "w.h5"
    tlkit.models.load_model(saved).save_weights(weights)
    edit(weights, lambda f: f.attrs.__setitem__("layer_names", np.array([b"conv", b"\xff\xfe"])))
    model = tlkit.models.load_model(saved)
    with pytest.raises(ModelFileError):
        model.load_weights(weights)
