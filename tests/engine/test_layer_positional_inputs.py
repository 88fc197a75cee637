"""A layer whose call takes several tensors positionally (``call(self, targets, logits)``), as Keras allows:
symbolic calls in a functional model, eager calls, gradients to every input."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit import ops


class WeightedSum(L.Layer):
    def call(self, first, second, scale=2.0):
        return first + second * scale


def test_functional_and_eager_calls_pass_the_tensors_positionally():
    a, b = tlkit.Input((3,)), tlkit.Input((3,))
    out = WeightedSum()(L.Dense(3, name="da")(a), L.Dense(3, name="db")(b))
    model = tlkit.Model([a, b], out)
    assert model.output_shape == (None, 3)
    x, y = np.ones((2, 3), "float32"), np.full((2, 3), 2.0, "float32")
    da, db = model.get_layer("da"), model.get_layer("db")
    expected = (x @ da.kernel.numpy() + da.bias.numpy()) + 2.0 * (y @ db.kernel.numpy() + db.bias.numpy())
    np.testing.assert_allclose(model.predict([x, y], verbose=0), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(WeightedSum()(x, y, scale=3.0)), x + 3.0 * y)

    with tlkit.GradientTape() as tape:
        loss = ops.sum(model([x, y]))
    grads = tape.gradient(loss, [da.kernel, db.kernel])
    np.testing.assert_allclose(grads[0], np.full((3, 3), 2.0))  # d/dW of sum(x W) over 2 rows of ones
    np.testing.assert_allclose(grads[1], np.full((3, 3), 8.0))  # 2 rows of 2s, scaled by 2


def test_training_false_given_in_the_graph_holds_while_the_model_trains():
    """``base(x, training=False)`` (the transfer-learning guide's frozen base): its BatchNormalization keeps its
    moving statistics during fit, while a call without the flag updates them."""
    inner_in = tlkit.Input((4,))
    inner = tlkit.Model(inner_in, L.BatchNormalization()(L.Dense(4)(inner_in)))
    bn = inner.layers[-1]
    x, y = np.random.default_rng(0).normal(3.0, 2.0, size=(32, 4)), np.zeros((32, 1))
    for flag, moves in ((False, False), (None, True)):
        inp = tlkit.Input((4,))
        model = tlkit.Model(inp, L.Dense(1)(inner(inp, training=flag) if flag is not None else inner(inp)))
        model.compile("adam", "mse")
        before = [w.numpy().copy() for w in bn.non_trainable_weights]
        model.fit(x, y, epochs=1, verbose=0)
        changed = any(not np.array_equal(b, w.numpy()) for b, w in zip(before, bn.non_trainable_weights))
        assert changed == moves


def test_non_tensor_positional_arguments_bind_to_calls_parameters():
    class Noisy(L.Layer):
        def call(self, inputs, training=False, scale=1.0):
            return inputs * scale + (1.0 if training else 0.0)

    x = np.ones((2, 3), "float32")
    noisy = Noisy()
    np.testing.assert_allclose(np.asarray(noisy(x, True, 3.0)), x * 3 + 1)  # training, then scale
    np.testing.assert_allclose(np.asarray(noisy(x, False)), x)
    assert not noisy.__dict__.get("_spread_inputs")
    dropped = np.asarray(L.Dropout(0.5)(np.ones((50, 40), "float32"), True))  # Keras 2's layer(x, training)
    assert set(np.unique(dropped)) == {0.0, 2.0}
    with pytest.raises(TypeError, match="takes 3 positional arguments; got 4"):
        noisy(x, True, 2.0, "extra")
