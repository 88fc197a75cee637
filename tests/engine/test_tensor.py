"""Tensors (op results): Python operators, numpy functions and indexing on them stay on the tape."""
import numpy as np

import tlkit
from tlkit import ops
from tlkit.engine.tensor import Tensor


def test_operators_and_numpy_calls_on_tensors_are_differentiable():
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    with tlkit.GradientTape() as tape:
        tape.watch(x)
        t = ops.convert_to_tensor(x)
        y = (2.0 - t) * t / 4 + t ** 2 - (-t) @ np.ones((3, 1))       # reflected operators too
        z = np.sum(np.exp(t)) + t.sum() + t[0, 1:].mean() + np.concatenate([t, t]).max() + abs(t).T.reshape(-1)[0]
        total = y.sum() + z
    g = tape.gradient(total, x)
    # the (2, 1) product broadcasts over 3 columns: +3; each entry: +1 from t.sum()
    expected = (2 - 2 * x) / 4 + 2 * x + 3 + np.exp(x) + 1
    expected[0, 1:] += 0.5
    expected[0, 2] += 1.0  # the maximum appears twice in the concatenation: half the gradient each
    expected[0, 0] += np.sign(x[0, 0])
    np.testing.assert_allclose(g, expected)


def test_tensor_is_an_ndarray_and_reports_plainly():
    t = ops.add(np.ones((2, 2), np.float32), 1)
    assert isinstance(t, np.ndarray) and isinstance(t, Tensor)
    assert t.dtype == np.float32 and t.shape == (2, 2)
    assert type(t.numpy()) is np.ndarray and float(t[0, 0]) == 2.0
    assert "tlkit.Tensor" in repr(t)
    t += 1  # in place keeps the object
    assert isinstance(t, Tensor) and float(t[1, 1]) == 3.0


def test_numpy_functions_without_an_op_compute_on_values():
    t = ops.ones((3,))
    out = np.linalg.det(np.diag(np.asarray(t)))
    assert float(out) == 1.0
    assert np.allclose(t, 1.0)


def test_in_place_arithmetic_on_a_tracked_tensor_stays_differentiable():
    x = np.array([1.0, -2.0, 3.0])
    with tlkit.GradientTape() as tape:
        tape.watch(x)
        y = ops.multiply(x, 2.0)
        y += x  # d/dx (2x + x) = 3; in place would hide the second term from the tape
        y *= x  # d/dx (3x * x) = 6x
        loss = ops.sum(y)
    np.testing.assert_allclose(tape.gradient(loss, x), 6.0 * x)
