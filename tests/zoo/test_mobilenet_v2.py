"""MobileNetV2: keras.applications' names, shapes and weight order, read from a file in Keras's
published layout; made-up weights give the same outputs as keras.applications (peers' Python, when
present) and, without Keras, as a numpy forward pass of the first block."""
import os
import subprocess

import h5py
import numpy as np
import pytest

from tlkit.zoo import MobileNetV2
from tlkit.zoo.mobilenet_v2 import make_divisible, preprocess_input, weight_names, weight_shapes

PEERS_PYTHON = os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python")


def made_up(rng, alpha, include_top=True, size=None):
    layers = {}
    for name, shapes in weight_shapes(include_top, alpha=alpha):
        if len(shapes) == 4:
            n = shapes[0][0]
            layers[name] = [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                            rng.uniform(0.5, 2, n)]
        else:
            fan_in = int(np.prod(shapes[0][:-1])) if not name.endswith("depthwise") else 9
            layers[name] = [rng.standard_normal(shapes[0]) * np.sqrt(2.0 / fan_in)] + [np.zeros(s) for s in shapes[1:]]
        layers[name] = [np.asarray(a, np.float32) for a in layers[name]]
    return layers


def write_keras_file(path, model, layers):
    """Keras 2's save_weights layout, as in the published mobilenet_v2_*.h5 files: root attrs
    layer_names (every layer), backend, keras_version; per layer weight_names "<layer>/<weight>:0"
    and the datasets under <layer>/<layer>/<weight>:0."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers])
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.2.4-tf"
        for layer in model.layers:
            group = f.create_group(layer.name)
            arrays = layers.get(layer.name, [])
            names = [f"{layer.name}/{w}:0" for w in weight_names(layer.name, len(arrays))]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for name, array in zip(names, arrays):
                group.create_dataset(name, data=array)
    return path


def test_keras_shapes_names_and_parameter_counts():
    counts = {0.35: 1_691_208, 1.0: 3_538_984, 1.4: 6_156_712}  # keras.applications' count_params()
    for alpha, count in counts.items():
        model = MobileNetV2(alpha=alpha, weights=None)
        built = [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers if layer.weights]
        assert built == weight_shapes(True, alpha=alpha) and model.count_params() == count
    assert make_divisible(32 * 0.35) == 16 and make_divisible(1280 * 1.3) == 1664
    with pytest.raises(ValueError, match="alpha can be one of"):
        MobileNetV2(alpha=0.6, weights=None)


def test_published_layout_loads_by_name_and_block_0_matches_numpy(tmp_path, rng):
    model = MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(64, 64, 3))
    layers = made_up(rng, 0.35, include_top=False)
    path = write_keras_file(tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
                            model, layers)
    loaded = MobileNetV2(alpha=0.35, include_top=False, weights=path, input_shape=(64, 64, 3))
    assert loaded.preprocessing == "tf"
    for layer in loaded.layers:
        for got, want in zip(layer.get_weights(), layers.get(layer.name, [])):
            np.testing.assert_array_equal(got, want)
    x = preprocess_input(rng.uniform(0, 255, (2, 64, 64, 3)))

    def bn(z, name):
        gamma, beta, mean, var = (a.astype(np.float64) for a in layers[name])
        return (z - mean) / np.sqrt(var + 1e-3) * gamma + beta

    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 1), (0, 1), (0, 0)))  # TF 'same', stride 2, even input
    k = layers["Conv1"][0]
    stem = sum(xp[:, i:i + 64:2, j:j + 64:2] @ k[i, j] for i in range(3) for j in range(3))
    stem = np.clip(bn(stem, "bn_Conv1"), 0, 6)
    sp, kd = np.pad(stem, ((0, 0), (1, 1), (1, 1), (0, 0))), layers["expanded_conv_depthwise"][0][..., 0]
    d = sum(sp[:, i:i + 32, j:j + 32] * kd[i, j] for i in range(3) for j in range(3))  # depthwise 3x3, 'same'
    d = np.clip(bn(d, "expanded_conv_depthwise_BN"), 0, 6)
    block0 = bn(d @ layers["expanded_conv_project"][0][0, 0], "expanded_conv_project_BN")
    got, names = x, [layer.name for layer in loaded.layers]
    for layer in loaded.layers[1:names.index("expanded_conv_project_BN") + 1]:  # block 0 is a plain chain
        got = layer(got, training=False)
    np.testing.assert_allclose(got, block0, rtol=1e-4, atol=1e-4 * np.abs(block0).max())


KERAS_SIDE = r'''
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import h5py, numpy as np, keras
path, alpha, size, include_top, x_path, out_path = sys.argv[1:7]
model = keras.applications.MobileNetV2(input_shape=(int(size), int(size), 3), alpha=float(alpha),
                                       include_top=include_top == "1", weights=None)
with h5py.File(path, "r") as f:
    for layer in model.layers:
        if layer.weights:
            group = f[layer.name]
            layer.set_weights([np.asarray(group[n]) for n in group.attrs["weight_names"]])
np.save(out_path, model.predict(np.load(x_path), verbose=0))
'''


@pytest.mark.parametrize("alpha,size,include_top", [(0.35, 96, False), (1.0, 224, True), (1.4, 75, False)])
def test_same_outputs_as_keras_applications(tmp_path, rng, alpha, size, include_top):
    if not os.path.exists(PEERS_PYTHON):
        pytest.skip(f"no peers Python with Keras at {PEERS_PYTHON}")
    model = MobileNetV2(alpha=alpha, include_top=include_top, weights=None, input_shape=(size, size, 3))
    layers = made_up(rng, alpha, include_top)
    path = write_keras_file(tmp_path / "w.h5", model, layers)
    x = preprocess_input(rng.uniform(0, 255, (2, size, size, 3)))
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run([PEERS_PYTHON, "-c", KERAS_SIDE, str(path), str(alpha), str(size),
                             "1" if include_top else "0", str(tmp_path / "x.npy"), str(tmp_path / "keras.npy")],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and "No module named" in result.stderr:
        pytest.skip(f"Keras is not importable in {PEERS_PYTHON}")
    assert result.returncode == 0, result.stderr[-2000:]
    expected = np.load(tmp_path / "keras.npy")
    ours = MobileNetV2(alpha=alpha, include_top=include_top, weights=path, input_shape=(size, size, 3))
    got = ours.predict(x, verbose=0)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
