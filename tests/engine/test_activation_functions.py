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
