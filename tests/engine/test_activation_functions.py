"""keras.activations.* called on tensors in user code (a custom layer's call) record on the tape: each
function's gradient against central finite differences (float64), and the functions train a layer."""
import numpy as np
import pytest

import tlkit
from tests.engine.test_ops_gradients import away_from_zero, check_op
from tlkit import activations

# Away from the kinks of relu6 and hard_sigmoid (0, +-3, 6) too.
KINK_FREE = away_from_zero(3, 5) * 2.2

CASES = {
    "relu": {}, "linear": {}, "sigmoid": {}, "tanh": {}, "softplus": {}, "softmax": {"axis": 0},
    "log_softmax": {}, "elu": {"alpha": 0.7}, "selu": {}, "leaky_relu": {"negative_slope": 0.1}, "relu6": {},
    "hard_sigmoid": {}, "hard_silu": {}, "silu": {}, "gelu": {}, "mish": {}, "swish": {}, "hard_swish": {},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_activation_function_gradients(name):
    fn = getattr(activations, name)
    if name == "linear":
        assert fn(KINK_FREE) is KINK_FREE
        return
    check_op(lambda x: fn(x, **CASES[name]), KINK_FREE, rtol=1e-5)


def test_relu_with_keras_options_matches_its_definition():
    x = np.array([-2.0, -0.5, 0.2, 0.7, 3.0])
    # Keras: x >= threshold keeps x (capped at max_value), else negative_slope * (x - threshold).
    expected = np.where(x >= 0.5, np.minimum(x, 2.0), 0.1 * (x - 0.5))
    np.testing.assert_allclose(activations.relu(x, negative_slope=0.1, max_value=2.0, threshold=0.5), expected)
    check_op(lambda v: activations.relu(v, negative_slope=0.1, max_value=2.0, threshold=0.5), x * 1.3 + 0.05)


def test_a_custom_layer_calling_activations_trains():
    class Block(tlkit.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner, self.outer = tlkit.layers.Dense(16), tlkit.layers.Dense(1)

        def call(self, inputs):
            return self.outer(tlkit.activations.gelu(self.inner(inputs)))

    block = Block()
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.abs(x[:, :1])
    optimizer = tlkit.optimizers.Adam(0.02)
    losses = []
    for _ in range(40):
        with tlkit.GradientTape() as tape:
            loss = tlkit.ops.mean(tlkit.ops.square(block(x) - y))
        grads = tape.gradient(loss, block.trainable_weights)
        assert all(g is not None for g in grads)  # the inner Dense gets its gradient through gelu
        optimizer.apply_gradients(zip(grads, block.trainable_weights))
        losses.append(float(loss))
    assert losses[-1] < 0.3 * losses[0]


def test_a_users_function_as_a_layers_activation_runs_after_the_linear_output(rng):
    def squash(x):  # not monotonic: a max pool taken before it would give other numbers
        return tlkit.ops.square(x) - x

    conv = tlkit.layers.Conv2D(3, 3, activation=squash)
    model = tlkit.Sequential([tlkit.Input((6, 6, 2)), conv, tlkit.layers.MaxPooling2D(2)])
    x = rng.standard_normal((2, 6, 6, 2)).astype("float32")
    linear = tlkit.Sequential([tlkit.Input((6, 6, 2)), tlkit.layers.Conv2D(3, 3)])
    linear.set_weights(conv.get_weights())
    z = np.asarray(linear.predict(x, verbose=0))
    activated = z ** 2 - z
    expected = activated.reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert conv.get_config()["activation"] == "squash"

    dense = tlkit.layers.Dense(2, activation=squash)
    dense(np.zeros((1, 4), "float32"))
    with tlkit.GradientTape() as tape:
        out = tlkit.ops.sum(dense(x[:, 0, 0, :1].repeat(4, axis=1)))
    grad = tape.gradient(out, dense.kernel)
    inputs = x[:, 0, 0, :1].repeat(4, axis=1)
    pre = inputs @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(grad, inputs.T @ (2 * pre - 1), rtol=1e-4, atol=1e-5)
