"""tlkit.GradientTape with TensorFlow's API, Variables with Keras's behaviour, and ops-built layers that
match the fused built-ins."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit import ops


def test_gradient_list_in_list_out_with_none_for_unconnected():
    a = tlkit.Variable(np.array([1.0, 2.0]), name="a")
    b = tlkit.Variable(np.array([3.0]), name="b")
    frozen = tlkit.Variable(np.array([5.0]), name="frozen", trainable=False)
    with tlkit.GradientTape() as tape:
        loss = ops.sum(a * a) * frozen[0]
    ga, gb, gf = tape.gradient(loss, [a, b, frozen])
    np.testing.assert_allclose(ga, 2 * np.array([1.0, 2.0]) * 5.0)
    assert gb is None and gf is None  # b unused; a non-trainable Variable is not watched
    assert ga.dtype == np.float32


def test_watch_persistent_and_zero_unconnected():
    x = np.array([[1.0, -2.0]], np.float32)
    other = np.ones(3, np.float32)
    with tlkit.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = ops.sum(ops.square(x))
        z = ops.sum(ops.exp(x))
    np.testing.assert_allclose(tape.gradient(y, x), 2 * x)
    np.testing.assert_allclose(tape.gradient(z, x), np.exp(x), rtol=1e-6)
    np.testing.assert_array_equal(tape.gradient(y, [other], unconnected_gradients="zero")[0], np.zeros(3))
    np.testing.assert_allclose(tape.gradient([y, z], x), 2 * x + np.exp(x), rtol=1e-6)


def test_non_persistent_tape_answers_once():
    v = tlkit.Variable(np.ones(2), name="v")
    with tlkit.GradientTape() as tape:
        y = ops.sum(v * 3)
    np.testing.assert_allclose(tape.gradient(y, v), [3.0, 3.0])
    with pytest.raises(RuntimeError, match="persistent=True"):
        tape.gradient(y, v)


def test_output_gradients_weight_the_target():
    x = np.arange(3.0)
    with tlkit.GradientTape() as tape:
        tape.watch(x)
        y = ops.multiply(x, 2.0)
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=np.array([1.0, 0.0, 5.0])), [2.0, 0.0, 10.0])


def test_variable_behaves_like_keras():
    v = tlkit.Variable(np.array([[1.0, 2.0], [3.0, 4.0]]), name="w")
    assert v.shape == (2, 2) and v.dtype == np.float32 and v.trainable and v.ndim == 2
    np.testing.assert_array_equal(np.asarray(v), v.numpy())
    np.testing.assert_array_equal(v + 1, [[2, 3], [4, 5]])
    np.testing.assert_array_equal(1 - v, [[0, -1], [-2, -3]])
    np.testing.assert_array_equal(np.ones((1, 2)) @ v, [[4, 6]])
    np.testing.assert_array_equal(v[1], [3, 4])
    np.testing.assert_array_equal(v > 2, [[False, False], [True, True]])
    v.assign_add(np.ones((2, 2)))
    v.assign_sub(2 * np.ones((2, 2)))
    np.testing.assert_array_equal(v.numpy(), [[0, 1], [2, 3]])
    v.assign(v * 2)
    np.testing.assert_array_equal(v.value, [[0, 2], [4, 6]])
    counter = tlkit.Variable(initializer="zeros", shape=(), dtype="int32", trainable=False)
    counter.assign_add(3)
    assert int(counter) == 3 and counter.dtype == np.int32
    assert len({v, counter}) == 2  # hashable: identity, as a weight in dicts and sets


def test_dense_written_with_ops_matches_fused_dense(rng):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    dense = L.Dense(4, activation="relu")
    dense(x)
    kernel, bias = dense.kernel, dense.bias
    dy = rng.standard_normal((6, 4)).astype(np.float32)
    with tlkit.GradientTape() as tape:
        tape.watch(x)
        fused = dense(x, training=True)
        loss = ops.sum(fused * dy)
    g_fused = tape.gradient(loss, [x, kernel, bias])
    with tlkit.GradientTape() as tape:
        tape.watch(x)
        mine = ops.relu(ops.matmul(x, kernel) + bias)
        loss = ops.sum(mine * dy)
    g_ops = tape.gradient(loss, [x, kernel, bias])
    np.testing.assert_allclose(mine, fused, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_ops, g_fused):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


@pytest.mark.parametrize("strides,padding", [(1, "same"), (2, "valid")])
def test_conv2d_written_with_ops_matches_fused_conv2d(rng, strides, padding):
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    conv = L.Conv2D(5, 3, strides=strides, padding=padding, activation="relu", bias_initializer="he_normal")
    conv(x)
    out_shape = conv(x).shape
    dy = rng.standard_normal(out_shape).astype(np.float32)
    with tlkit.GradientTape() as tape:
        tape.watch(x)
        fused = conv(x, training=True)
        g_fused = tape.gradient(ops.sum(fused * dy), [x, conv.kernel, conv.bias])
    with tlkit.GradientTape() as tape:
        tape.watch(x)
        mine = ops.relu(ops.conv(x, conv.kernel, strides=strides, padding=padding) + conv.bias)
        g_ops = tape.gradient(ops.sum(mine * dy), [x, conv.kernel, conv.bias])
    np.testing.assert_allclose(mine, fused, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_ops, g_fused):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


def test_layer_outputs_combine_with_python_operators_inside_call(rng):
    """A subclassed model doing maths between built-in layers trains every layer."""
    class Mixed(tlkit.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = L.Dense(3), L.Dense(1)

        def call(self, inputs):
            h = self.a(inputs)
            return self.b(h * 2.0 + ops.tanh(h))

    model = Mixed()
    x = rng.standard_normal((4, 2)).astype(np.float32)
    model(x)
    with tlkit.GradientTape() as tape:
        loss = ops.mean(ops.square(model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_weights)
    assert len(grads) == 4 and all(g is not None for g in grads)
    # finite difference on one kernel entry
    k = model.a.kernel
    eps, old = 1e-2, float(k.value[0, 0])

    def value():
        return float(np.mean(np.square(np.asarray(model(x), np.float64))))
    k.value[0, 0] = old + eps
    up = value()
    k.value[0, 0] = old - eps
    down = value()
    k.value[0, 0] = old
    np.testing.assert_allclose(grads[0][0, 0], (up - down) / (2 * eps), rtol=2e-2, atol=1e-4)


def test_built_in_loss_object_is_differentiable_in_a_tape(rng):
    logits_layer = L.Dense(3)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y = np.array([0, 2, 1, 1, 0])
    loss_fn = tlkit.losses.SparseCategoricalCrossentropy(from_logits=True)
    logits_layer(x)
    with tlkit.GradientTape() as tape:
        logits = logits_layer(x, training=True)
        loss = loss_fn(y, logits)
    gk = tape.gradient(loss, logits_layer.kernel)
    with tlkit.GradientTape() as tape:
        z = ops.matmul(x, logits_layer.kernel) + logits_layer.bias
        ref = ops.mean(ops.sparse_categorical_crossentropy(y, z, from_logits=True))
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-5)
    np.testing.assert_allclose(gk, tape.gradient(ref, logits_layer.kernel), rtol=1e-4, atol=1e-6)
