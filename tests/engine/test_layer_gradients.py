"""Every layer's backward against central finite differences."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L

from gradcheck import analytic, check


def _layer_fn(layer):
    return lambda xs, training: layer(xs, training=training)


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax", "softplus"])
def test_dense_gradients(rng, activation):
    layer = L.Dense(5, activation=activation)
    x = rng.standard_normal((4, 7)).astype(np.float32)
    layer(x)
    check(_layer_fn(layer), [x], layer.weights)


def test_dense_on_rank3_input(rng):
    layer = L.Dense(3)
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    layer(x)
    check(_layer_fn(layer), [x], layer.weights)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "softmax", "softplus"])
def test_activation_layer_gradients(rng, activation):
    layer = L.Activation(activation)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    check(_layer_fn(layer), [x], [])


@pytest.mark.parametrize("training", [True, False])
def test_batch_normalization_gradients(rng, training):
    layer = L.BatchNormalization(momentum=0.0)
    x = (rng.standard_normal((6, 3, 3, 4)) * 2 + 1).astype(np.float32)
    layer(x)
    layer.moving_variance.assign(rng.uniform(0.5, 2, 4))
    layer.momentum = 1.0  # keep the moving statistics fixed while differencing
    check(_layer_fn(layer), [x], [layer.gamma, layer.beta], training=training)


def test_concatenate_and_add_gradients(rng):
    a = rng.standard_normal((2, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal((2, 3, 3, 5)).astype(np.float32)
    check(_layer_fn(L.Concatenate()), [a, b], [])
    c = rng.standard_normal((2, 3, 3, 2)).astype(np.float32)
    check(_layer_fn(L.Add()), [a, c], [])


@pytest.mark.parametrize("layer_factory", [
    lambda: L.GlobalAveragePooling2D(), lambda: L.GlobalMaxPooling2D(), lambda: L.Flatten(),
    lambda: L.Reshape((-1, 2)), lambda: L.ZeroPadding2D(((1, 2), (0, 3))),
    lambda: L.GlobalAveragePooling2D(keepdims=True),
])
def test_shape_layers_gradients(rng, layer_factory):
    x = rng.standard_normal((2, 4, 5, 2)).astype(np.float32)
    check(_layer_fn(layer_factory()), [x], [])


@pytest.mark.parametrize("kwargs", [
    dict(filters=3, kernel_size=3, padding="same"),
    dict(filters=2, kernel_size=(2, 3), strides=2, padding="same"),
    dict(filters=4, kernel_size=3, strides=(2, 1), padding="valid"),
    dict(filters=2, kernel_size=3, dilation_rate=2, padding="same", activation="tanh"),
    dict(filters=3, kernel_size=1, activation="tanh"),
])
def test_conv2d_gradients(rng, kwargs):
    layer = L.Conv2D(**kwargs)
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    layer(x)
    check(_layer_fn(layer), [x], layer.weights)


def tape_grads(layer, x, dy):
    xgrads, wgrads = analytic(layer, [x], layer.weights, dy)
    return layer(x), xgrads + wgrads


def test_conv2d_fused_relu_gradient_is_linear_gradient_masked(rng):
    """ReLU's kink defeats finite differences; check the fused path exactly instead:
    d(relu(conv))/d* == d(conv)/d* with dy zeroed where the output is not positive."""
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    fused = L.Conv2D(2, 3, dilation_rate=2, padding="same", activation="relu")
    linear = L.Conv2D(2, 3, dilation_rate=2, padding="same")
    fused(x), linear(x)
    linear.set_weights(fused.get_weights())
    dy = rng.standard_normal((2, 7, 6, 2)).astype(np.float32)
    y, grads = tape_grads(fused, x, dy)
    y_lin, grads_lin = tape_grads(linear, x, dy * (y > 0))
    np.testing.assert_allclose(y, np.maximum(y_lin, 0), rtol=1e-6, atol=1e-6)
    for g, g_lin in zip(grads, grads_lin):
        np.testing.assert_allclose(g, g_lin, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [L.MaxPooling2D, L.AveragePooling2D])
@pytest.mark.parametrize("kwargs", [dict(), dict(pool_size=3, strides=2, padding="same"),
                                    dict(pool_size=(2, 3), strides=1)])
def test_pooling_gradients(rng, cls, kwargs):
    # Values at least 0.05 apart, so the finite-difference step never changes a max window's winner.
    x = (rng.permutation(2 * 7 * 6 * 3).reshape(2, 7, 6, 3) * 0.05).astype(np.float32)
    check(_layer_fn(cls(**kwargs)), [x], [])


def test_small_network_gradients(rng):
    """A whole network: conv, BN, pooling, a fire-style branch and merge, dense head.

    Smooth activations and average pooling: ReLU kinks and max-pool winner changes under the
    finite-difference step would make the reference itself wrong (both are checked exactly above)."""
    tlkit.utils.set_random_seed(0)
    inp = tlkit.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", activation="tanh")(inp)
    x = L.BatchNormalization()(x)
    x = L.AveragePooling2D()(x)
    squeeze = L.Conv2D(3, 1, activation="tanh")(x)
    left = L.Conv2D(2, 1, activation="tanh")(squeeze)
    right = L.Conv2D(2, 3, padding="same", activation="tanh")(squeeze)
    x = L.Concatenate()([left, right])
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(3, activation="softmax")(x)
    model = tlkit.Model(inp, out)
    xb = rng.standard_normal((3, 8, 8, 3)).astype(np.float32)
    check(lambda xs, training: model(xs, training=training), [xb], model.trainable_weights, training=True)
