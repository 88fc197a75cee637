"""VGG16: Keras's rules, weights from Keras's published layout, torchvision state dicts and
safetensors, a torch oracle, and one full 224x224 prediction with the top."""
import numpy as np
import pytest

from tlkit.engine.layers import Conv2D, Dense, Flatten, Input
from tlkit.engine.model import Model
from tlkit.zoo import VGG16, vgg16
from tlkit.zoo.loading import _chw_rows_to_hwc, load_zoo_weights
from tlkit.zoo.preprocessing import preprocess_input
from tlkit.zoo.weights import write_safetensors


def layer_shapes(model):
    return [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers if layer.weights]


def test_layer_names_and_shapes_without_top():
    model = VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    assert [layer.name for layer in model.layers[1:]] == [
        name for b, (_, convs) in enumerate(vgg16.BLOCKS, 1)
        for name in [f"block{b}_conv{c}" for c in range(1, convs + 1)] + [f"block{b}_pool"]]
    assert layer_shapes(model) == vgg16.weight_shapes(include_top=False)
    assert model.output_shape == (None, 1, 1, 512)
    assert VGG16(include_top=False, weights=None, input_shape=(64, 48, 3), pooling="max").output_shape == (None, 512)


@pytest.mark.parametrize("kwargs, message", [
    (dict(include_top=False, weights=None, input_shape=(31, 64, 3)), "at least 32x32"),
    (dict(include_top=False, weights=None, pooling="mean"), "pooling"),
    (dict(include_top=True, weights="imagenet", classes=10), "classes"),
    (dict(include_top=False, weights="no/such/file.h5"), "weights"),
])
def test_keras_argument_rules(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VGG16(**kwargs)


def test_include_top_with_weights_needs_224(tmp_path):
    path = tmp_path / "w.h5"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"should be \(224, 224, 3\)"):
        VGG16(include_top=True, weights=path, input_shape=(64, 64, 3))


def test_fc1_rows_follow_tlkits_flatten_order_small_stand_in(rng):
    """A conv -> flatten -> dense stand-in: torch's (out, C*H*W) weight, reordered, gives torch's answer."""
    inputs = Input((3, 4, 2))
    features = Conv2D(5, 1, name="conv")(inputs)
    model = Model(inputs, Dense(6, name="fc")(Flatten()(features)))
    x = rng.standard_normal((2, 3, 4, 2)).astype(np.float32)
    conv_kernel, conv_bias = rng.standard_normal((1, 1, 2, 5)).astype(np.float32), np.zeros(5, np.float32)
    torch_weight = rng.standard_normal((6, 5 * 3 * 4)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    model.get_layer("conv").set_weights([conv_kernel, conv_bias])
    model.get_layer("fc").set_weights([_chw_rows_to_hwc(torch_weight, channels=5), bias])
    feature_map = x @ conv_kernel[0, 0]                                   # (n, H, W, C)
    torch_answer = feature_map.transpose(0, 3, 1, 2).reshape(2, -1) @ torch_weight.T + bias  # flattened (C, H, W)
    np.testing.assert_allclose(model.predict(x, verbose=0), torch_answer, rtol=1e-5, atol=1e-5)


def all_layer_names(include_top):
    model_names = ["input_1"]
    for b, (_, convs) in enumerate(vgg16.BLOCKS, 1):
        model_names += [f"block{b}_conv{c}" for c in range(1, convs + 1)] + [f"block{b}_pool"]
    return model_names + (["flatten", "fc1", "fc2", "predictions"] if include_top else [])


def test_keras_layout_torch_and_safetensors_files_without_top(tmp_path, rng, torch_files, zoo_files):
    layers = zoo_files.made_up(vgg16.weight_shapes(include_top=False), rng)
    keras_path = zoo_files.write_keras(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", layers,
                                       all_layer_names(False))
    state = zoo_files.to_torchvision(vgg16, layers)
    paths = {"caffe": keras_path, "torch": torch_files.write(tmp_path / "vgg16.pth", state),
             "torch (safetensors)": write_safetensors(tmp_path / "vgg16.safetensors", state)}
    x = rng.standard_normal((1, 32, 32, 3)).astype(np.float32) * 50
    outputs = {}
    for label, path in paths.items():
        model = VGG16(include_top=False, weights=path, input_shape=(32, 32, 3), pooling="avg")
        assert model.preprocessing == label.split()[0]
        np.testing.assert_array_equal(model.get_layer("block3_conv2").get_weights()[0], dict(layers)["block3_conv2"][0])
        outputs[label] = model.predict(x, verbose=0)
    assert np.abs(outputs["caffe"]).max() > 0
    np.testing.assert_allclose(outputs["torch"], outputs["caffe"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs["torch (safetensors)"], outputs["torch"])


def torch_vgg16(torch, x_nhwc, state, include_top):
    F = torch.nn.functional
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    t = {k: torch.from_numpy(v) for k, v in state.items()}
    index = 0
    for _, convs in vgg16.BLOCKS:
        for _ in range(convs):
            x = F.relu(F.conv2d(x, t[f"features.{index}.weight"], t[f"features.{index}.bias"], padding=1))
            index += 2
        x = F.max_pool2d(x, 2, 2)
        index += 1
    if not include_top:
        return x.numpy().transpose(0, 2, 3, 1)
    x = torch.flatten(x, 1)  # channels first, as torchvision does
    x = F.relu(F.linear(x, t["classifier.0.weight"], t["classifier.0.bias"]))
    x = F.relu(F.linear(x, t["classifier.3.weight"], t["classifier.3.bias"]))
    return F.linear(x, t["classifier.6.weight"], t["classifier.6.bias"]).numpy()  # logits


def test_forward_without_top_matches_torch(tmp_path, rng, torch_files, zoo_files):
    torch = pytest.importorskip("torch")
    state = zoo_files.to_torchvision(vgg16, zoo_files.made_up(vgg16.weight_shapes(include_top=False), rng))
    path = tmp_path / "vgg16_features.pth"
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    model = VGG16(include_top=False, weights=path, input_shape=(64, 64, 3))
    x = preprocess_input(rng.uniform(0, 255, (2, 64, 64, 3)), mode=model.preprocessing)
    ours, theirs = model.predict(x, verbose=0), torch_vgg16(torch, x, state, include_top=False)
    assert ours.shape == theirs.shape == (2, 2, 2, 512)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_full_network_keras_file_and_torchvision_file_predict_the_same(tmp_path, torch_files, zoo_files):
    """The one 224x224 test with the top (~15 GFLOP per pass): the same network as Keras's
    published file and as a torchvision state dict (first conv rewritten for torch preprocessing)
    gives the same predictions on the same image, each file with the preprocessing it records."""
    rng = np.random.default_rng(5)
    layers = zoo_files.made_up(vgg16.weight_shapes(include_top=True), rng)
    keras_path = zoo_files.write_keras(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5", layers,
                                       all_layer_names(True))
    state = zoo_files.to_torchvision(vgg16, layers, fold_preprocessing=True)
    torch_path = torch_files.write(tmp_path / "vgg16-made-up.pth", state)
    del layers
    # A smooth picture: its border looks like its inside, as photos' borders mostly do.
    yy, xx = np.mgrid[0:224, 0:224] / 224.0
    image = np.stack([128 + 60 * np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], -1)[None]

    model = VGG16(include_top=True, weights=keras_path, classifier_activation=None)  # logits: softmax would saturate
    assert layer_shapes(model) == vgg16.weight_shapes(include_top=True)
    keras_predictions = model.predict(preprocess_input(image, mode=model.preprocessing), verbose=0)
    load_zoo_weights(model, "vgg16", torch_path, include_top=True)
    assert model.preprocessing == "torch"
    torch_input = preprocess_input(image, mode=model.preprocessing)
    torch_predictions = model.predict(torch_input, verbose=0)

    assert keras_predictions.shape == (1, 1000)
    assert vgg16.decode_predictions(torch_predictions, top=5)[0][0][:2] == \
        vgg16.decode_predictions(keras_predictions, top=5)[0][0][:2]
    # Exact away from the border; the two zero paddings stand for pixels ~0.5/255 apart.
    scale = np.abs(keras_predictions).max()
    np.testing.assert_allclose(torch_predictions, keras_predictions, rtol=0, atol=1e-3 * scale)
    try:
        import torch
    except ImportError:
        return
    np.testing.assert_allclose(torch_predictions, torch_vgg16(torch, torch_input, state, include_top=True),
                               rtol=1e-4, atol=1e-4 * scale)


def test_imagenet_weights_come_from_the_cache(tmp_path, monkeypatch, rng, zoo_files):
    """weights="imagenet" -> $TLKIT_HOME/models/<Keras file name>, checked against its md5 (here a
    made-up file stands in for the published one, whose md5 the test cannot produce)."""
    import hashlib

    from tlkit.zoo import loading
    from tlkit.zoo.weights.download import PublishedWeights

    layers = zoo_files.made_up(vgg16.weight_shapes(include_top=False), rng)
    cache = tmp_path / "home" / "models"
    cache.mkdir(parents=True)
    path = zoo_files.write_keras(cache / loading.VGG16_WEIGHTS_NOTOP.fname, layers, all_layer_names(False))
    stand_in = PublishedWeights(path.name, "http://127.0.0.1:9/unreachable.h5",
                                hashlib.md5(path.read_bytes()).hexdigest())
    monkeypatch.setattr(loading, "VGG16_WEIGHTS_NOTOP", stand_in)
    monkeypatch.setenv("TLKIT_HOME", str(tmp_path / "home"))
    model = VGG16(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
    assert model.preprocessing == "caffe"
    np.testing.assert_array_equal(model.get_layer("block1_conv1").get_weights()[0], layers[0][1][0])
