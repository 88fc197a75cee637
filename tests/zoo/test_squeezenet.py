"""SqueezeNet v1.1: architecture, weight files of every kind, a torch oracle, and the real weights."""
import pathlib

import numpy as np
import pytest

from tlkit.zoo import SqueezeNet, squeezenet
from tlkit.zoo.preprocessing import preprocess_input
from tlkit.zoo.weights import write_safetensors

REAL_WEIGHTS = "weights/squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5"


def layer_shapes(model):
    return [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers if layer.weights]


@pytest.mark.parametrize("include_top", [False, True])
def test_architecture_matches_its_declared_weight_shapes(include_top):
    model = SqueezeNet(include_top=include_top, weights=None, classes=7)
    assert layer_shapes(model) == squeezenet.weight_shapes(include_top, classes=7)
    assert sum(int(np.prod(s)) for _, shapes in squeezenet.weight_shapes(False) for s in shapes) == 722496


def test_output_shape_at_224():
    model = SqueezeNet(weights=None, input_shape=(224, 224, 3))
    assert model.output_shape == (None, 13, 13, 512)


def test_imagenet_weights_are_refused_with_the_way_out():
    with pytest.raises(ValueError, match=r"no official Keras ImageNet weight file.*path"):
        SqueezeNet(weights="imagenet")


def torch_squeezenet(torch, x_nhwc, state, include_top=False):
    """SqueezeNet v1.1 in torch.nn.functional from a torchvision state dict (valid, floor pooling
    like the Keras network; torchvision itself uses ceil_mode, equal only for some sizes)."""
    F = torch.nn.functional

    def conv(x, prefix, **kw):
        return F.relu(F.conv2d(x, torch.from_numpy(state[f"{prefix}.weight"]),
                               torch.from_numpy(state[f"{prefix}.bias"]), **kw))

    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    x = F.max_pool2d(conv(x, "features.0", stride=2), 3, 2)
    for module in (3, 4, "pool", 6, 7, "pool", 9, 10, 11, 12):
        if module == "pool":
            x = F.max_pool2d(x, 3, 2)
            continue
        s = conv(x, f"features.{module}.squeeze")
        x = torch.cat([conv(s, f"features.{module}.expand1x1"), conv(s, f"features.{module}.expand3x3", padding=1)], 1)
    if include_top:
        x = F.softmax(conv(x, "classifier.1").mean((2, 3)), 1)
        return x.numpy()
    return x.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("include_top", [False, True])
def test_forward_matches_torch(tmp_path, rng, torch_files, zoo_files, include_top):
    torch = pytest.importorskip("torch")
    layers = zoo_files.made_up(squeezenet.weight_shapes(include_top, classes=10), rng)
    state = zoo_files.to_torchvision(squeezenet, layers)
    path = tmp_path / "squeezenet1_1.pth"
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    model = SqueezeNet(include_top=include_top, weights=path, input_shape=(227, 227, 3) if include_top else (67, 67, 3),
                       classes=10)
    assert model.preprocessing == "torch"
    images = rng.uniform(0, 255, (2,) + model.input_shape[1:]).astype(np.float32)
    x = preprocess_input(images, mode=model.preprocessing)
    ours = model.predict(x, verbose=0)
    theirs = torch_squeezenet(torch, x, state, include_top)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_keras_torch_and_safetensors_files_give_the_same_network(tmp_path, rng, torch_files, zoo_files):
    layers = zoo_files.made_up(squeezenet.weight_shapes(False), rng)
    reference = SqueezeNet(weights=None, input_shape=(48, 48, 3))
    keras_path = zoo_files.write_keras(tmp_path / "sq.h5", layers, [l.name for l in reference.layers])
    state = zoo_files.to_torchvision(squeezenet, layers)
    torch_path = torch_files.write(tmp_path / "sq.pth", state)
    safetensors_path = write_safetensors(tmp_path / "sq.safetensors", state)
    x = rng.standard_normal((2, 48, 48, 3)).astype(np.float32) * 50
    outputs = []
    for path, preprocessing in [(keras_path, "caffe"), (torch_path, "torch"), (safetensors_path, "torch")]:
        model = SqueezeNet(weights=path, input_shape=(48, 48, 3))
        assert model.preprocessing == preprocessing
        np.testing.assert_array_equal(model.get_layer("fire9/expand3x3").get_weights()[0], layers[-1][1][0])
        outputs.append(model.predict(x, verbose=0))
    assert np.abs(outputs[0]).max() > 0
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(outputs[2], outputs[1])


def test_real_weights_load_by_name_and_order(shared_data):
    import h5py

    path = shared_data / REAL_WEIGHTS
    model = SqueezeNet(weights=path)
    assert model.preprocessing == "caffe"
    with h5py.File(path, "r") as f:
        kernel_name, bias_name = [n.decode() for n in f["fire5/expand3x3"].attrs["weight_names"]]
        kernel, bias = model.get_layer("fire5/expand3x3").get_weights()
        np.testing.assert_array_equal(kernel, f["fire5/expand3x3"][kernel_name][()])
        np.testing.assert_array_equal(bias, f["fire5/expand3x3"][bias_name][()])


def test_real_weights_as_groups_of_images_match_the_layer_route_and_torch(shared_data, rng, monkeypatch):
    from tlkit.engine import batch_split
    from tlkit.utils import threads

    model = SqueezeNet(weights=shared_data / REAL_WEIGHTS, input_shape=(99, 99, 3))  # odd sizes at every layer
    x = preprocess_input(rng.uniform(0, 255, (6, 99, 99, 3)).astype(np.float32))
    monkeypatch.setattr(batch_split, "ENABLED", False)
    layer_route = model.predict_on_batch(x).copy()
    monkeypatch.setattr(batch_split, "ENABLED", None)
    grouped = model.predict_on_batch(x)
    if threads.num_threads() >= 2 and threads.chunks_can_run_numba():
        assert model._graph._programs  # the groups' compiled steps, kept per thread: the route ran
    scale = np.abs(layer_route).max()
    assert scale > 0
    np.testing.assert_allclose(grouped, layer_route, rtol=1e-5, atol=1e-5 * scale)
    torch = pytest.importorskip("torch")
    state = {}
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            name = squeezenet.TORCHVISION_NAMES[layer.name]
            state[f"{name}.weight"], state[f"{name}.bias"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias
    np.testing.assert_allclose(grouped, torch_squeezenet(torch, x, state), rtol=1e-4, atol=1e-4 * scale)


# --- real weights on real photos --------------------------------------------------------------


def load_images(folder, size):
    from PIL import Image

    images, labels = [], []
    for label, name in enumerate(("ants", "bees")):
        for path in sorted((folder / name).iterdir()):
            if path.suffix.lower() not in (".jpg", ".jpeg"):
                continue  # the folder holds one placeholder .gif on purpose
            with Image.open(path) as image:
                image.draft("RGB", (size, size))  # JPEG decodes at reduced scale: much faster
                images.append(np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), np.float32))
            labels.append(label)
    return np.stack(images), np.array(labels)


def logistic_regression_accuracy(train_x, train_y, val_x, val_y, l2=1e-2, steps=500, lr=0.5):
    """Binary logistic regression by full-batch gradient descent on standardized features."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    w, b = np.zeros(train_x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(train_x @ w + b)))
        w -= lr * (train_x.T @ (p - train_y) / len(train_y) + l2 * w)
        b -= lr * (p - train_y).mean()
    return float(((val_x @ w + b > 0) == val_y).mean())


def test_real_weights_separate_ants_from_bees_and_shuffled_ones_do_not(shared_data):
    size = 160
    data = pathlib.Path(shared_data) / "datasets" / "hymenoptera_data"
    train_x, train_y = load_images(data / "train", size)
    val_x, val_y = load_images(data / "val", size)
    model = SqueezeNet(weights=shared_data / REAL_WEIGHTS, input_shape=(size, size, 3), pooling="avg")

    def accuracy(step=1):
        features = [model.predict(preprocess_input(x[::step]), batch_size=64, verbose=0) for x in (train_x, val_x)]
        return logistic_regression_accuracy(features[0], train_y[::step], features[1], val_y[::step])

    trained = accuracy()
    assert trained >= 0.85, trained
    rng = np.random.default_rng(0)
    for layer in model.layers:  # same values, meaningless places: the trained structure is gone
        layer.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in layer.get_weights()])
    shuffled = accuracy(step=2)  # half the images: enough to see chance, half the cost
    assert shuffled < 0.7, shuffled
