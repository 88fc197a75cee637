"""``tlkit convert``: checks everything, prints the match table, writes nothing on a mismatch."""
import hashlib
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tlkit.cli import main
from tlkit.zoo import SqueezeNet, VGG16, squeezenet, vgg16
from tlkit.zoo.weights import read_weight_file, write_safetensors

REAL_SQUEEZENET = "weights/squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5"


def run(*args):
    result = CliRunner().invoke(main, ["convert", *map(str, args)])
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


@pytest.fixture
def vgg16_notop(rng, zoo_files):
    return zoo_files.made_up(vgg16.weight_shapes(include_top=False), rng)


def test_torch_file_to_tlkit_file_and_back_into_vgg16(tmp_path, vgg16_notop, torch_files, zoo_files):
    src = torch_files.write(tmp_path / "vgg16-made-up.pth", zoo_files.to_torchvision(vgg16, vgg16_notop))
    dst = tmp_path / "out" / "vgg16_tlkit.h5"
    result, output = run(src, dst)
    assert result.exit_code == 0, output
    assert "torchvision names -> VGG16 (without top)" in output
    assert "block1_conv1" in output and "features.0.weight, .bias" in output and "(3,3,3,64) (64,)" in output
    assert os.listdir(dst.parent) == ["vgg16_tlkit.h5"]  # written atomically: no temporary file left

    stored = read_weight_file(dst)
    assert stored.format == "keras_h5"
    meta = stored.metadata
    assert meta["architecture"] == "vgg16" and meta["preprocessing"] == "torch" and meta["include_top"] is False
    assert meta["source_file"] == "vgg16-made-up.pth"
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["weight_shapes"]["block5_conv3"] == [[3, 3, 512, 512], [512]]

    model = VGG16(include_top=False, weights=dst, input_shape=(32, 32, 3))
    assert model.preprocessing == "torch"  # restored from the metadata
    for name, (kernel, bias) in vgg16_notop:
        got_kernel, got_bias = model.get_layer(name).get_weights()
        np.testing.assert_array_equal(got_kernel, kernel)
        np.testing.assert_array_equal(got_bias, bias)


def test_missing_and_misshapen_layers_are_listed_and_nothing_is_written(tmp_path, vgg16_notop, torch_files,
                                                                        zoo_files):
    state = zoo_files.to_torchvision(vgg16, vgg16_notop)
    del state["features.28.weight"]                                   # block5_conv3
    state["features.10.bias"] = np.zeros(255, np.float32)             # block3_conv1 needs 256
    dst = tmp_path / "never.h5"
    result, output = run(torch_files.write(tmp_path / "broken.pth", state), dst)
    assert result.exit_code == 1
    assert "missing: block5_conv3" in output
    assert "misshapen: block3_conv1: the file has (3,3,128,256) (255,), VGG16 needs (3,3,128,256) (256,)" in output
    assert "nothing was written" in output
    assert "block1_conv1" in output and "ok" in output  # the table of what did match is printed too
    assert not dst.exists() and os.listdir(tmp_path) == ["broken.pth"]


def test_a_file_of_the_wrong_architecture_is_refused(tmp_path, rng, zoo_files):
    layers = zoo_files.made_up(squeezenet.weight_shapes(False), rng)
    src = zoo_files.write_keras(tmp_path / "squeezenet.h5", layers, [name for name, _ in layers])
    dst = tmp_path / "out.h5"
    result, output = run(src, dst, "--arch", "vgg16")
    assert result.exit_code == 1 and "missing: block1_conv1" in output and not dst.exists()
    with pytest.raises(ValueError, match=r"not a VGG16 weight file.*different architecture"):
        VGG16(include_top=False, weights=src)


def test_architecture_and_top_are_recognised_from_the_names(tmp_path, rng, zoo_files, torch_files):
    layers = zoo_files.made_up(squeezenet.weight_shapes(include_top=True, classes=10), rng)
    src = write_safetensors(tmp_path / "squeezenet1_1.safetensors", zoo_files.to_torchvision(squeezenet, layers))
    result, output = run(src, tmp_path / "sq.h5", "--from", "safetensors")
    assert result.exit_code == 0, output
    assert "SqueezeNet (with top)" in output and "classifier.1.weight, .bias" in output
    model = SqueezeNet(include_top=True, weights=tmp_path / "sq.h5", classes=10)
    assert model.preprocessing == "torch"
    np.testing.assert_array_equal(model.get_layer("conv10").get_weights()[0], layers[-1][1][0])
    result, output = run(src, tmp_path / "sq_notop.h5", "--no-top")
    assert result.exit_code == 0 and "(without top)" in output and "not used: classifier.1" in output
    assert "conv10" not in read_weight_file(tmp_path / "sq_notop.h5").layers


def test_wrong_from_format_and_bad_files_are_clear_errors(tmp_path, torch_files):
    pth = torch_files.write(tmp_path / "w.pth", {"x": np.ones(2, np.float32)})
    result, output = run(pth, tmp_path / "o.h5", "--from", "keras")
    assert result.exit_code == 1 and "is a torch file, not keras" in output
    result, output = run(pth, tmp_path / "o.h5")
    assert result.exit_code == 1 and "none of the layer names" in output
    evil = torch_files.write(tmp_path / "evil.pth", torch_files.Payload(torch_files.Global("os", "system"), "true"))
    result, output = run(evil, tmp_path / "o.h5")
    assert result.exit_code == 1 and "refusing to load os.system" in output
    assert not (tmp_path / "o.h5").exists()


def test_truncated_hdf5_is_refused(tmp_path, shared_data):
    data = (shared_data / REAL_SQUEEZENET).read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    result, output = run(cut, tmp_path / "o.h5")
    assert result.exit_code == 1 and "cut.h5" in output and "truncated" in output
    with pytest.raises(ValueError, match="truncated"):
        SqueezeNet(weights=cut)


def test_real_squeezenet_file_converts_and_keeps_its_provenance(tmp_path, shared_data):
    src = shared_data / REAL_SQUEEZENET
    result, output = run(src, tmp_path / "sq.h5")
    assert result.exit_code == 0, output
    assert "keras names -> SqueezeNet (without top)" in output and "uniform1, conv1_b" in output
    meta = read_weight_file(tmp_path / "sq.h5").metadata
    assert meta["source_sha256"] == "17154246284f555591549ac2c83e127abfbf4307dc4b0060fdaa2931d0fa38da"
    assert meta["preprocessing"] == "caffe"
    original, converted = SqueezeNet(weights=src), SqueezeNet(weights=tmp_path / "sq.h5")
    for a, b in zip(original.get_weights(), converted.get_weights()):
        np.testing.assert_array_equal(a, b)
