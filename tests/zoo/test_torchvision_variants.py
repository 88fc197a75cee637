"""MobileNetV2 and ResNet50 from torchvision's state dicts (.pth through tlkit's own reader, .safetensors):
exact key names and shapes, the torchvision variant built from the file (symmetric padding; ResNet v1.5),
outputs equal to torchvision's architecture written out in numpy (always) and in torch (when installed)."""
import numpy as np
import pytest
import torchvision_reference as reference
from click.testing import CliRunner

from tlkit.cli import main
from tlkit.zoo import MobileNetV2, ResNet50
from tlkit.zoo.weights import read_weight_file, write_safetensors

BUILD = {"mobilenet_v2": MobileNetV2, "resnet50": ResNet50}


def close(got, expected):
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet50"])
def test_state_dict_keys_and_shapes_fill_every_layer(tmp_path, rng, torch_files, arch):
    state = reference.random_state_dict(arch, rng)
    model = BUILD[arch](weights=torch_files.write(tmp_path / f"{arch}.pth", state))
    assert model.preprocessing == "torch"
    layers = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    floats = sum(1 for key, value in state.items() if value.dtype == np.float32)
    assert sum(len(arrays) for arrays in layers.values()) == floats  # every array of the file went somewhere
    # The stem, by torchvision's names: (out, in, kh, kw) -> (kh, kw, in, out); BatchNorm as is.
    stem, bn = ("features.0.0", "features.0.1") if arch == "mobilenet_v2" else ("conv1", "bn1")
    kernel = layers["Conv1" if arch == "mobilenet_v2" else "conv1_conv"][0]
    np.testing.assert_array_equal(kernel, state[f"{stem}.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(layers["bn_Conv1" if arch == "mobilenet_v2" else "conv1_bn"][3],
                                  state[f"{bn}.running_var"])
    top = "classifier.1" if arch == "mobilenet_v2" else "fc"
    np.testing.assert_array_equal(layers["predictions"][0], state[f"{top}.weight"].T)


@pytest.mark.parametrize("arch,size", [("mobilenet_v2", (48, 48)), ("mobilenet_v2", (37, 52)), ("resnet50", (64, 64)),
                                       ("resnet50", (45, 38))])
def test_features_equal_torchvisions_architecture_in_numpy(tmp_path, rng, torch_files, arch, size):
    state = reference.random_state_dict(arch, rng, classes=0)
    path = torch_files.write_legacy(tmp_path / f"{arch}.pth", state)
    x = rng.standard_normal((2, *size, 3)).astype(np.float32)
    expected = reference.numpy_forward(arch, state, nchw(x), include_top=False).transpose(0, 2, 3, 1)
    model = BUILD[arch](include_top=False, weights=path, input_shape=(*size, 3))
    close(model.predict(x, verbose=0), expected)


def test_mobilenet_v2_logits_equal_numpy_from_safetensors(tmp_path, rng):
    state = reference.random_state_dict("mobilenet_v2", rng, classes=10)
    path = write_safetensors(tmp_path / "mobilenet_v2.safetensors",
                             {k: v for k, v in state.items() if v.dtype == np.float32})
    x = rng.standard_normal((1, 224, 224, 3)).astype(np.float32)
    model = MobileNetV2(weights=path, classes=10, classifier_activation=None)
    assert model.get_layer("top_dropout").rate == 0.2
    close(model.predict(x, verbose=0), reference.numpy_forward("mobilenet_v2", state, nchw(x)))


@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet50"])
def test_convert_records_the_variant_and_the_converted_file_builds_it(tmp_path, rng, arch):
    state = reference.random_state_dict(arch, rng, classes=0)
    src = write_safetensors(tmp_path / f"{arch}.safetensors", state)
    dst = tmp_path / f"{arch}_tlkit.h5"
    result = CliRunner().invoke(main, ["convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    described = "(without top, torchvision variant" + (", alpha 1.0)" if arch == "mobilenet_v2" else ")")
    assert "torchvision names" in result.output and described in result.output
    assert "not used" not in result.output  # num_batches_tracked is no weight
    meta = read_weight_file(dst).metadata
    assert meta["variant"] == "torchvision" and meta["preprocessing"] == "torch" and meta["architecture"] == arch
    x = rng.standard_normal((1, 40, 40, 3)).astype(np.float32)
    converted = BUILD[arch](include_top=False, weights=dst, input_shape=(40, 40, 3))
    assert converted.preprocessing == "torch"
    close(converted.predict(x, verbose=0),
          reference.numpy_forward(arch, state, nchw(x), include_top=False).transpose(0, 2, 3, 1))


def test_the_variant_must_agree_with_the_file(tmp_path, rng, torch_files, zoo_files):
    path = torch_files.write(tmp_path / "resnet50.pth", reference.random_state_dict("resnet50", rng, classes=0))
    with pytest.raises(ValueError, match=r"holds the torchvision ResNet50.*pass variant='torchvision'"):
        ResNet50(include_top=False, weights=path, variant="keras")
    with pytest.raises(ValueError, match="variant can be one of"):
        MobileNetV2(weights=None, variant="tf")
    from tlkit.zoo.mobilenet_v2 import weight_names, weight_shapes

    keras = MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    keras_file = zoo_files.write_keras2(tmp_path / "keras.h5", keras,
                                        zoo_files.made_up_bn(weight_shapes(False, alpha=0.35), rng), weight_names)
    with pytest.raises(ValueError, match="holds the keras MobileNetV2"):
        MobileNetV2(alpha=0.35, include_top=False, weights=keras_file, variant="torchvision")
    # Built without weights, the variants differ where torchvision's does: padding and ResNet's stride.
    tv = ResNet50(include_top=False, weights=None, variant="torchvision")
    assert tv.get_layer("conv3_block1_1_conv").strides == (1, 1) and tv.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert tv.get_layer("conv3_block1_1_conv").use_bias is False and tv.preprocessing == "torch"
    assert ResNet50(include_top=False, weights=None).get_layer("conv3_block1_1_conv").strides == (2, 2)


@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet50"])
def test_outputs_equal_a_torch_module_of_torchvisions_architecture(tmp_path, rng, arch):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = reference.torch_module(arch)
    with torch.no_grad():  # BatchNorm statistics and affine away from their defaults
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    state = net.state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == reference.state_dict_layout(arch)
    torch.save(state, tmp_path / f"{arch}.pth")
    write_safetensors(tmp_path / f"{arch}.safetensors", {k: v.numpy() for k, v in state.items()
                                                           if v.dtype == torch.float32})
    x = rng.standard_normal((2, 224, 224, 3)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(nchw(x))).numpy()
    for name in (f"{arch}.pth", f"{arch}.safetensors"):
        model = BUILD[arch](weights=tmp_path / name, classifier_activation=None)
        close(model.predict(x, verbose=0), expected)
    x = rng.standard_normal((1, 75, 97, 3)).astype(np.float32)  # odd sizes: every padding rule shows
    trunk = net.features if arch == "mobilenet_v2" else torch.nn.Sequential(*list(net.children())[:-1])
    with torch.no_grad():
        features = trunk(torch.from_numpy(nchw(x))).numpy().transpose(0, 2, 3, 1)
    base = BUILD[arch](include_top=False, weights=tmp_path / f"{arch}.pth", input_shape=(75, 97, 3))
    close(base.predict(x, verbose=0), features)
