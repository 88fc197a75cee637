"""ResNet50: keras.applications' names, shapes and weight order, read from a file in Keras's published
layout; made-up weights give the same outputs as keras.applications (peers' Python, when present) and,
without Keras, as a numpy forward pass of the stem."""
import numpy as np
import pytest

from tlkit.zoo import ResNet50
from tlkit.zoo.resnet50 import preprocess_input, weight_names, weight_shapes


def test_keras_shapes_names_and_parameter_count():
    model = ResNet50(weights=None)
    built = [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers if layer.weights]
    assert built == weight_shapes(True)
    assert model.count_params() == 25_636_712  # keras.applications.ResNet50().count_params()
    assert ResNet50(include_top=False, weights=None, pooling="avg").output_shape == (None, 2048)


def test_published_layout_loads_by_name_and_the_stem_matches_numpy(tmp_path, rng, zoo_files):
    model = ResNet50(include_top=False, weights=None, input_shape=(40, 40, 3))
    layers = zoo_files.made_up_bn(weight_shapes(False), rng)
    path = zoo_files.write_keras2(tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", model, layers,
                                  weight_names)
    loaded = ResNet50(include_top=False, weights=path, input_shape=(40, 40, 3))
    for layer in loaded.layers:
        for got, want in zip(layer.get_weights(), layers.get(layer.name, [])):
            np.testing.assert_array_equal(got, want)
    x = preprocess_input(rng.uniform(0, 255, (2, 40, 40, 3)))
    kernel, bias = (a.astype(np.float64) for a in layers["conv1_conv"])
    gamma, beta, mean, var = (a.astype(np.float64) for a in layers["conv1_bn"])
    xp = np.pad(x.astype(np.float64), ((0, 0), (3, 3), (3, 3), (0, 0)))
    z = sum(xp[:, i:i + 40:2, j:j + 40:2] @ kernel[i, j] for i in range(7) for j in range(7)) + bias
    z = np.maximum((z - mean) / np.sqrt(var + 1.001e-5) * gamma + beta, 0)
    zp = np.pad(z, ((0, 0), (1, 1), (1, 1), (0, 0)))
    pooled = np.max([zp[:, i:i + 20:2, j:j + 20:2][:, :10, :10] for i in range(3) for j in range(3)], axis=0)
    got, names = x, [layer.name for layer in loaded.layers]
    for layer in loaded.layers[1:names.index("pool1_pool") + 1]:
        got = layer(got, training=False)
    np.testing.assert_allclose(got, pooled, rtol=1e-4, atol=1e-4 * np.abs(pooled).max())


@pytest.mark.parametrize("size,include_top", [(64, False), (224, True)])
def test_same_outputs_as_keras_applications(tmp_path, rng, zoo_files, size, include_top):
    model = ResNet50(include_top=include_top, weights=None, input_shape=(size, size, 3))
    path = zoo_files.write_keras2(tmp_path / "w.h5", model, zoo_files.made_up_bn(weight_shapes(include_top), rng),
                                  weight_names)
    x = preprocess_input(rng.uniform(0, 255, (2, size, size, 3)))
    expected = zoo_files.keras_outputs(tmp_path, "ResNet50", path, x, include_top=include_top,
                                       input_shape=[size, size, 3])
    got = ResNet50(include_top=include_top, weights=path, input_shape=(size, size, 3)).predict(x, verbose=0)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
