import io
import json
import os
import zipfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlkit import __version__
from tlkit.zoo.weights import WeightFileError, read_keras_archive, read_keras_h5, read_weight_file, write_keras_h5

SQUEEZENET = "weights/squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5"

# VGG16's conv base with made-up small widths, named exactly as Keras's published file.
VGG_CONVS = [("block1_conv1", 3, 4), ("block1_conv2", 4, 4), ("block2_conv1", 4, 8), ("block2_conv2", 8, 8)]
VGG_LAYER_NAMES = ["input_1", "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2",
                   "block2_pool"]


def make_vgg_style_file(path, rng, under=None):
    """Keras 2 'tensors only' layout written with plain h5py: <layer>_W_1:0 / <layer>_b_1:0."""
    expected = {}
    with h5py.File(path, "w") as f:
        root = f.create_group(under) if under else f
        if under:
            f.attrs["model_config"] = json.dumps({"class_name": "Model"}).encode()
        root.attrs["layer_names"] = np.array([n.encode() for n in VGG_LAYER_NAMES])
        root.attrs["keras_version"] = b"2.2.4"
        root.attrs["backend"] = b"tensorflow"
        convs = {name: (cin, cout) for name, cin, cout in VGG_CONVS}
        for name in VGG_LAYER_NAMES:
            group = root.create_group(name)
            if name not in convs:
                group.attrs["weight_names"] = np.array([], dtype=np.float64)  # as Keras writes it
                continue
            cin, cout = convs[name]
            kernel = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
            bias = rng.standard_normal(cout).astype(np.float32)
            group.attrs["weight_names"] = np.array([f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()])
            group[f"{name}_W_1:0"] = kernel
            group[f"{name}_b_1:0"] = bias
            expected[name] = [kernel, bias]
    return expected


def assert_layers_equal(got, expected):
    assert list(got) == list(expected)
    for name in expected:
        assert len(got[name]) == len(expected[name]), name
        for a, b in zip(got[name], expected[name]):
            assert a.dtype == np.float32
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("under", [None, "model_weights"])
def test_reads_vgg16_layout(tmp_path, rng, under):
    expected = make_vgg_style_file(tmp_path / "vgg.h5", rng, under)
    wf = read_keras_h5(tmp_path / "vgg.h5")
    assert wf.format == "keras_h5"
    assert_layers_equal(wf.layers, expected)
    assert wf.weight_names["block2_conv1"] == ["block2_conv1_W_1:0", "block2_conv1_b_1:0"]
    assert wf.attrs["keras_version"] == "2.2.4" and wf.attrs["backend"] == "tensorflow"
    assert wf.attrs["layer_names"] == VGG_LAYER_NAMES
    assert wf.metadata is None


def test_reads_real_squeezenet_file(shared_data):
    path = shared_data / SQUEEZENET
    wf = read_weight_file(path)
    assert wf.format == "keras_h5"
    assert len(wf.layers) == 25
    assert sum(len(v) for v in wf.layers.values()) == 50
    assert sum(a.size for v in wf.layers.values() for a in v) == 722_496
    assert list(wf.layers)[:3] == ["conv1", "fire2/squeeze1x1", "fire2/expand1x1"]
    kernel, bias = wf.layers["fire2/squeeze1x1"]
    assert kernel.shape == (1, 1, 64, 16) and bias.shape == (16,)
    assert wf.layers["conv1"][0].shape == (3, 3, 3, 64)
    assert wf.layers["fire9/expand3x3"][0].shape == (3, 3, 64, 256)
    with h5py.File(path, "r") as f:  # independent reference: the datasets by their full paths
        np.testing.assert_array_equal(kernel, f["fire2/squeeze1x1/uniform2"][()])
        np.testing.assert_array_equal(bias, f["fire2/squeeze1x1/fire2/squeeze1x1_b"][()])


def test_writer_roundtrip_with_nested_names_and_metadata(tmp_path, rng):
    layers = [
        ("input_1", []),
        ("conv1", [("conv1/kernel:0", rng.standard_normal((3, 3, 3, 4)).astype(np.float32)),
                   ("conv1/bias:0", rng.standard_normal(4).astype(np.float32))]),
        ("fire2/squeeze1x1", [("fire2/squeeze1x1/kernel:0", rng.standard_normal((1, 1, 4, 2)).astype(np.float32)),
                              ("fire2/squeeze1x1/bias:0", np.zeros(2, np.float32))]),
        ("bn", [(n, rng.standard_normal(2).astype(np.float32)) for n in ("gamma", "beta", "mean", "var")]),
    ]
    source = {"file": "squeezenet.h5", "sha256": "ab" * 32}
    write_keras_h5(tmp_path / "w.h5", layers, metadata={"architecture": "squeezenet", "preprocessing": "caffe",
                                                         "source": source})
    wf = read_keras_h5(tmp_path / "w.h5")
    assert_layers_equal(wf.layers, {name: [a for _, a in weights] for name, weights in layers if weights})
    assert wf.weight_names["fire2/squeeze1x1"] == ["fire2/squeeze1x1/kernel:0", "fire2/squeeze1x1/bias:0"]
    assert wf.attrs["layer_names"] == ["input_1", "conv1", "fire2/squeeze1x1", "bn"]
    assert wf.metadata["architecture"] == "squeezenet" and wf.metadata["preprocessing"] == "caffe"
    assert wf.metadata["source"] == source
    assert wf.metadata["tlkit_version"] == __version__
    assert wf.metadata["weight_shapes"]["conv1"] == [[3, 3, 3, 4], [4]]
    assert wf.metadata["weight_shapes"]["input_1"] == []


def test_writer_uses_keras2_layout(tmp_path):
    kernel = np.ones((2, 3), np.float32)
    write_keras_h5(tmp_path / "w.h5", [("dense", [("dense/kernel:0", kernel)]), ("flatten", [])])
    with h5py.File(tmp_path / "w.h5", "r") as f:  # what Keras 2's loader looks at
        assert [n.decode() for n in f.attrs["layer_names"]] == ["dense", "flatten"]
        assert [n.decode() for n in f["dense"].attrs["weight_names"]] == ["dense/kernel:0"]
        assert len(f["flatten"].attrs["weight_names"]) == 0
        np.testing.assert_array_equal(f["dense"]["dense/kernel:0"][()], kernel)
        assert f.attrs["keras_version"] != b"1"  # "1" would make Keras 2 convert the weights
        assert f.attrs["backend"] == b"tensorflow"
        json.loads(f.attrs["tlkit_metadata"][0])


def test_many_layers_use_chunked_attributes(tmp_path):
    layers = [(f"layer_with_a_long_name_{i:05d}", [("w", np.full(1, i, np.float32))]) for i in range(3000)]
    write_keras_h5(tmp_path / "big.h5", layers)
    with h5py.File(tmp_path / "big.h5", "r") as f:
        assert "layer_names" not in f.attrs and "layer_names1" in f.attrs  # Keras's chunking
    wf = read_keras_h5(tmp_path / "big.h5")
    assert list(wf.layers) == [name for name, _ in layers]
    assert wf.layers["layer_with_a_long_name_02999"][0][0] == 2999


def test_failed_write_leaves_existing_file_untouched(tmp_path):
    path = tmp_path / "w.h5"
    write_keras_h5(path, [("a", [("k", np.ones(2, np.float32))])])
    before = path.read_bytes()
    # "a/b" is a dataset in layer "a", so creating layer group "a/b" fails half-way through.
    with pytest.raises(Exception):
        write_keras_h5(path, [("a", [("b", np.ones(2, np.float32))]), ("a/b", [("k", np.ones(2, np.float32))])])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.h5"]


@pytest.mark.parametrize(
    "layers, pattern",
    [
        ([("a", []), ("a", [])], "twice"),
        ([("a", [("w", np.ones(1)), ("w", np.ones(1))])], "twice"),
        ([("", [])], "invalid layer name"),
        ([("a//b", [])], "invalid layer name"),
        ([("a", [("../w", np.ones(1))])], "invalid weight name"),
        ([("a", [("w", np.array(["text"]))])], "dtype"),
        (["not a pair"], "each layer"),
    ],
)
def test_writer_rejects_bad_input(tmp_path, layers, pattern):
    with pytest.raises(ValueError, match=pattern):
        write_keras_h5(tmp_path / "w.h5", layers)
    assert not (tmp_path / "w.h5").exists()


def test_writer_rejects_unserializable_metadata(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        write_keras_h5(tmp_path / "w.h5", [], metadata={"x": object()})


# --- Keras 3 layouts ---------------------------------------------------------------------------


def make_keras3_weights(f, rng):
    """``model.save_weights("x.weights.h5")`` layout of Keras 3, with a nested Sequential."""
    expected = {}

    def add(path, name, arrays):
        group = f.create_group(f"{path}/vars")
        group.attrs["name"] = name
        for i, array in enumerate(arrays):
            group[str(i)] = array
        if arrays:
            expected[name] = arrays

    add("layers/input_layer", "input_layer_1", [])
    add("layers/conv2d", "block1_conv1", [rng.standard_normal((3, 3, 3, 2)).astype(np.float32), np.ones(2, np.float32)])
    # 12 arrays: numeric order must put "10" and "11" after "9"
    add("layers/many", "many", [np.full((1,), i, np.float32) for i in range(12)])
    add("layers/sequential", "sub", [])
    inner = [rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32)]
    add("layers/sequential/layers/dense", "inner_dense", inner)
    expected["sub/inner_dense"] = expected.pop("inner_dense")
    f.create_group("optimizer/vars")["0"] = np.array(5, np.int64)  # training state: not a layer
    f.create_group("vars").attrs["name"] = "functional_1"
    return expected


def test_reads_keras3_weights_h5(tmp_path, rng):
    with h5py.File(tmp_path / "m.weights.h5", "w") as f:
        expected = make_keras3_weights(f, rng)
    wf = read_weight_file(tmp_path / "m.weights.h5")
    assert wf.format == "keras_weights_h5"
    assert sorted(wf.layers) == sorted(expected)
    for name in expected:
        for a, b in zip(wf.layers[name], expected[name], strict=True):
            np.testing.assert_array_equal(a, b)
    assert [a[0] for a in wf.layers["many"]] == list(range(12))
    assert wf.attrs["paths"]["sub/inner_dense"] == "layers/sequential/layers/dense"


def test_keras3_bfloat16_variables(tmp_path):
    values = np.array([1.5, -2.0, 3.0], np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2").view("V2")
    with h5py.File(tmp_path / "bf.weights.h5", "w") as f:
        group = f.create_group("layers/dense/vars")
        group.attrs["name"] = "dense"
        group.create_dataset("0", data=raw).attrs["dtype"] = "bfloat16"
    np.testing.assert_array_equal(read_keras_h5(tmp_path / "bf.weights.h5").layers["dense"][0], values)


def keras_archive(path, weights_bytes, extra=None):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.5.0", "date_saved": "today"}))
        # A config is only ever read by Keras to rebuild the model; tlkit must not touch it.
        z.writestr("config.json", '{"class_name": "Lambda", "config": {"function": "__import__(\'os\')"}}')
        if weights_bytes is not None:
            z.writestr("model.weights.h5", weights_bytes)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def test_reads_keras_archive_in_memory(tmp_path, rng):
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        expected = make_keras3_weights(f, rng)
    path = keras_archive(tmp_path / "model.keras", buffer.getvalue())
    wf = read_weight_file(path)
    assert wf.format == "keras_archive"
    assert sorted(wf.layers) == sorted(expected)
    np.testing.assert_array_equal(wf.layers["block1_conv1"][0], expected["block1_conv1"][0])
    assert wf.attrs["keras_version"] == "3.5.0"
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]  # nothing extracted


def test_archive_without_weights_is_refused(tmp_path):
    path = keras_archive(tmp_path / "model.keras", None)
    with pytest.raises(WeightFileError, match="model.weights.h5"):
        read_keras_archive(path)


# --- damaged and lying files -------------------------------------------------------------------


def small_legacy_file(path):
    write_keras_h5(path, [("conv", [("kernel", np.arange(24, dtype=np.float32).reshape(2, 3, 4)),
                                    ("bias", np.ones(4, np.float32))]), ("dense", [("w", np.ones((4, 2)))])])
    return path


def test_truncated_file(tmp_path):
    path = small_legacy_file(tmp_path / "w.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match="truncated|damaged") as info:
        read_keras_h5(path)
    assert str(path) in str(info.value)


def edit(path, change):
    with h5py.File(path, "a") as f:
        change(f)
    return path


@pytest.mark.parametrize(
    "change, pattern",
    [
        (lambda f: f["conv"].attrs.__delitem__("weight_names"), "no 'weight_names'"),
        (lambda f: f.__delitem__("dense"), "'dense' listed in layer_names is missing"),
        (lambda f: f["conv"].__delitem__("bias"), "weight 'bias' of layer 'conv' is missing"),
        (lambda f: f["conv"].attrs.__setitem__("weight_names", np.array([1.0, 2.0])), "not names"),
        (lambda f: f["conv"].attrs.__setitem__("weight_names", np.array([b"kernel", b"/abs"])), "invalid name"),
        (lambda f: (f["conv"].__delitem__("bias"), f["conv"].create_dataset("bias", data=np.array([b"x"]))),
         "not a numeric array"),
        (lambda f: (f["conv"].__delitem__("bias"), f["conv"].create_dataset("bias", shape=(2**40,), dtype="f4",
                                                                             chunks=(1024,))), "declares shape"),
        (lambda f: f.attrs.__setitem__("tlkit_metadata", "{not json"), "tlkit_metadata"),
    ],
)
def test_damaged_structure_gives_clear_errors(tmp_path, change, pattern):
    path = edit(small_legacy_file(tmp_path / "w.h5"), change)
    with pytest.raises(WeightFileError, match=pattern):
        read_keras_h5(path)


def test_hdf5_that_is_not_keras(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.ones(3)
    with pytest.raises(WeightFileError, match="not a Keras weight file"):
        read_keras_h5(tmp_path / "other.h5")


def test_not_hdf5_at_all(tmp_path):
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(WeightFileError, match="HDF5 cannot open"):
        read_keras_h5(tmp_path / "text.h5")
    with pytest.raises(WeightFileError, match="does not exist"):
        read_keras_h5(tmp_path / "missing.h5")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_files_only_raise_weightfileerror(tmp_path, data):
    good = tmp_path / "good.h5"
    if not good.exists():
        small_legacy_file(good)
    content = bytearray(good.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(content) - 1))
        content[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        content = content[: data.draw(st.integers(0, len(content)))]
    path = tmp_path / "fuzz.h5"
    path.write_bytes(bytes(content))
    try:
        read_keras_h5(path)
    except WeightFileError:
        pass
