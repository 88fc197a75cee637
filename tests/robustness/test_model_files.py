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


# --- declared shapes, checksums and metadata (issue 14.2, 14.11) --------------------------------


def _classifier_file(path, metadata=None):
    model = tlkit.Sequential([tlkit.Input((8, 8, 3)), L.Conv2D(4, 3, name="conv"), L.GlobalAveragePooling2D(),
                              L.Dense(2, activation="softmax", name="d")])
    model.save(path, metadata=metadata if metadata is not None else
               {"classes": ["ants", "bees"], "image_size": 8, "preprocessing": "caffe"})
    return path


def _bomb(path, shape):
    """The kernel of layer 'd' replaced by a gzip-chunked dataset of ``shape`` that was never written:
    the file stays small, reading the dataset would allocate the whole declared size."""
    with h5py.File(path, "r+") as f:
        group = f["model_weights/d"]
        del group["kernel"]
        group.create_dataset("kernel", shape=shape, dtype="float32", chunks=(1, 1000), compression="gzip")
    return path


@pytest.mark.parametrize("shape", [(750, 10 ** 6), (400_000, 300_000)])
def test_huge_declared_shape_is_refused_fast_in_bounded_memory(tmp_path, bounded_python, shape):
    path = _bomb(_classifier_file(tmp_path / "model.h5"), shape)
    assert path.stat().st_size < 64 * 1024
    result = bounded_python.run("import tlkit\nfrom tlkit.engine.saving.errors import UnreadableFileError\n", f"""
        try:
            tlkit.models.load_model({str(path)!r})
            print("LOADED")
        except UnreadableFileError as e:
            print("REFUSED", e)
        """, headroom_mb=400)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("REFUSED") and "declares shape" in result.stdout, result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_summary_of_a_huge_declared_shape_is_one_error_line(tmp_path, bounded_python):
    path = _bomb(_classifier_file(tmp_path / "model.h5"), (400_000, 300_000))
    result = bounded_python.run("import sys\nfrom tlkit.cli import main\n", f"""
        sys.argv = ["tlkit", "summary", {str(path)!r}]
        main()
        """, headroom_mb=400)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.startswith("Error: ") and "declares shape" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_mismatched_shapes_are_refused_before_any_array_is_read(saved, monkeypatch):
    """Honestly stored but wrong-shaped weights: compared with the model before reading."""
    from tlkit.engine.saving import keras_h5_layout

    edit(saved, lambda f: _replace(f["model_weights/d"], "kernel", np.zeros((300, 2), np.float32)))
    reads = []
    original = keras_h5_layout.read_checked
    monkeypatch.setattr(keras_h5_layout, "read_checked", lambda ds, *a: reads.append(ds.name) or original(ds, *a))
    with pytest.raises(ModelFileError, match=r"expects weights of shapes"):
        tlkit.models.load_model(saved)
    assert reads == []


def test_load_weights_checks_shapes_before_reading(saved, tmp_path, monkeypatch):
    from tlkit.engine.saving import keras_h5_layout

    weights = tmp_path / "w.h5"
    model = tlkit.models.load_model(saved)
    model.save_weights(weights)
    edit(weights, lambda f: _replace(f["d"], "kernel", np.zeros((300, 2), np.float32)))
    reads = []
    original = keras_h5_layout.read_checked
    monkeypatch.setattr(keras_h5_layout, "read_checked", lambda ds, *a: reads.append(ds.name) or original(ds, *a))
    with pytest.raises(ModelFileError, match=r"expects weights of shapes"):
        model.load_weights(weights)
    assert reads == []


def _flip_data_byte(path, dataset, value=b"\xff\xff\xff\x7f"):
    """Overwrite the first float of ``dataset``'s stored bytes (a NaN), HDF5 structure untouched."""
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(value)


def test_changed_data_bytes_fail_the_checksum(saved, tmp_path):
    _flip_data_byte(saved, "model_weights/conv/kernel")
    with pytest.raises(ModelFileError, match="checksum"):
        tlkit.models.load_model(saved)


def test_weight_files_carry_a_checksum_too(saved, tmp_path):
    from tlkit.zoo.weights import WeightFileError, read_weight_file, write_keras_h5

    weights = tmp_path / "w.h5"
    model = tlkit.models.load_model(saved)
    model.save_weights(weights)
    _flip_data_byte(weights, "d/kernel")
    with pytest.raises(ModelFileError, match="checksum"):
        model.load_weights(weights)
    converted = write_keras_h5(tmp_path / "c.h5", [("d", [("kernel:0", np.ones((3, 2), np.float32))])])
    _flip_data_byte(converted, "d/kernel:0")
    with pytest.raises(WeightFileError, match="checksum"):
        read_weight_file(converted)


def test_checksum_does_not_refuse_a_good_file_or_a_keras_file(saved, tmp_path):
    with h5py.File(saved, "r") as f:
        assert "tlkit_weights_crc32" in f["model_weights"].attrs
    tlkit.models.load_model(saved)
    edit(saved, lambda f: f["model_weights"].attrs.__delitem__("tlkit_weights_crc32"))  # as Keras writes it
    tlkit.models.load_model(saved)


@pytest.mark.parametrize("metadata", ["[1, 2]", "\"text\"", "{not json"])
def test_metadata_that_is_not_an_object_is_one_clear_error(tmp_path, metadata):
    from click.testing import CliRunner

    from tlkit.cli import main

    path = _classifier_file(tmp_path / "model.h5")
    edit(path, lambda f: f.attrs.__setitem__("tlkit_metadata", metadata))
    with pytest.raises(ModelFileError, match="tlkit_metadata"):
        tlkit.models.load_model(path)
    image = tmp_path / "x.png"
    from PIL import Image
    Image.new("RGB", (8, 8)).save(image)
    for args in (["summary", str(path)], ["predict", str(path), str(image)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and "tlkit_metadata" in result.output
        assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("field, value", [("classes", 5), ("classes", [1, 2]), ("image_size", "big"),
                                          ("image_size", -3), ("preprocessing", [])])
def test_metadata_fields_of_the_wrong_type_are_one_clear_error(tmp_path, field, value):
    from click.testing import CliRunner

    from tlkit.cli import main

    metadata = {"classes": ["ants", "bees"], "image_size": 8, "preprocessing": "caffe", field: value}
    path = _classifier_file(tmp_path / "model.h5", metadata)
    result = CliRunner().invoke(main, ["summary", str(path)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and field in result.output
