"""An LSTM cell written with tlkit.ops (Keras's equations, gate order i, f, c, o) gives the built-in LSTM
layer's outputs and gradients (its fused numba kernel), and its own gradients match finite differences."""
import numpy as np
import pytest

import tlkit
from tests.engine.test_ops_gradients import check_op
from tlkit import layers as L
from tlkit import ops


def lstm_in_ops(x, kernel, recurrent_kernel, bias):
    """h_t for every step: z = x_t W + h U + b; i, f, c~, o = split(z); c = f c + i tanh(c~); h = o tanh(c)."""
    x = ops.convert_to_tensor(x)
    units = recurrent_kernel.shape[0]
    h = ops.zeros((x.shape[0], units), x.dtype)
    c = ops.zeros((x.shape[0], units), x.dtype)
    outputs = []
    for t in range(x.shape[1]):
        z = ops.matmul(x[:, t, :], kernel) + ops.matmul(h, recurrent_kernel) + bias
        i, f, candidate, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(candidate)
        h = ops.sigmoid(o) * ops.tanh(c)
        outputs.append(h)
    return ops.stack(outputs, axis=1)


@pytest.mark.parametrize("units", [3, 8])
def test_lstm_cell_in_ops_matches_the_built_in_layer(rng, units):
    x = rng.standard_normal((4, 6, 5)).astype(np.float32)
    lstm = L.LSTM(units, return_sequences=True, bias_initializer="random_normal")
    lstm(x)
    weights = [lstm.kernel, lstm.recurrent_kernel, lstm.bias]
    dy = rng.standard_normal((4, 6, units)).astype(np.float32)
    with tlkit.GradientTape() as tape:
        tape.watch(x)
        fused = lstm(x, training=True)
        g_fused = tape.gradient(ops.sum(fused * dy), [x] + weights)
    x_tensor = ops.convert_to_tensor(x)  # a Tensor: its slices x[:, t, :] record on the tape
    with tlkit.GradientTape() as tape:
        tape.watch(x_tensor)
        mine = lstm_in_ops(x_tensor, *weights)
        g_ops = tape.gradient(ops.sum(mine * dy), [x_tensor] + weights)
    np.testing.assert_allclose(mine, fused, rtol=1e-5, atol=1e-6)
    for name, a, b in zip(["x", "kernel", "recurrent_kernel", "bias"], g_ops, g_fused):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max(), err_msg=name)


def test_lstm_cell_in_ops_gradients_match_finite_differences(rng):
    units, features = 3, 2
    x = rng.standard_normal((2, 4, features))
    kernel = rng.standard_normal((features, 4 * units)) * 0.5
    recurrent_kernel = rng.standard_normal((units, 4 * units)) * 0.5
    bias = rng.standard_normal(4 * units) * 0.5
    check_op(lstm_in_ops, x, kernel, recurrent_kernel, bias, rtol=1e-5)
