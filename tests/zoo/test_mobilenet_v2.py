"""MobileNetV2: keras.applications' names, shapes and weight order, read from a file in Keras's
published layout; made-up weights give the same outputs as keras.applications (peers' Python, when
present) and, without Keras, as a numpy forward pass of the first block."""
import numpy as np
import pytest

from tlkit.zoo import MobileNetV2
from tlkit.zoo.mobilenet_v2 import make_divisible, preprocess_input, weight_names, weight_shapes


def test_keras_shapes_names_and_parameter_counts():
    counts = {0.35: 1_691_208, 1.0: 3_538_984, 1.4: 6_156_712}  # keras.applications' count_params()
    for alpha, count in counts.items():
        model = MobileNetV2(alpha=alpha, weights=None)
        built = [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers if layer.weights]
        assert built == weight_shapes(True, alpha=alpha) and model.count_params() == count
    assert make_divisible(32 * 0.35) == 16 and make_divisible(1280 * 1.3) == 1664
    with pytest.raises(ValueError, match="alpha can be one of"):
        MobileNetV2(alpha=0.6, weights=None)


def test_published_layout_loads_by_name_and_block_0_matches_numpy(tmp_path, rng, zoo_files):
    model = MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(64, 64, 3))
    layers = zoo_files.made_up_bn(weight_shapes(False, alpha=0.35), rng)
    path = zoo_files.write_keras2(tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
                                  model, layers, weight_names)
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


@pytest.mark.parametrize("alpha,size,include_top", [(0.35, 96, False), (1.0, 224, True), (1.4, 75, False)])
def test_same_outputs_as_keras_applications(tmp_path, rng, zoo_files, alpha, size, include_top):
    model = MobileNetV2(alpha=alpha, include_top=include_top, weights=None, input_shape=(size, size, 3))
    path = zoo_files.write_keras2(tmp_path / "w.h5", model, zoo_files.made_up_bn(weight_shapes(include_top, alpha=alpha),
                                                                                 rng), weight_names)
    x = preprocess_input(rng.uniform(0, 255, (2, size, size, 3)))
    expected = zoo_files.keras_outputs(tmp_path, "MobileNetV2", path, x, alpha=alpha, include_top=include_top,
                                       input_shape=[size, size, 3])
    ours = MobileNetV2(alpha=alpha, include_top=include_top, weights=path, input_shape=(size, size, 3))
    got = ours.predict(x, verbose=0)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
