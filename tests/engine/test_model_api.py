"""The three ways to build a model, nesting, freezing, summary and the errors people hit."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.tape import GradientTape


def fire(x, squeeze, expand, name):
    s = L.Conv2D(squeeze, 1, activation="relu", name=f"{name}/squeeze1x1")(x)
    left = L.Conv2D(expand, 1, activation="relu", name=f"{name}/expand1x1")(s)
    right = L.Conv2D(expand, 3, padding="same", activation="relu", name=f"{name}/expand3x3")(s)
    return L.Concatenate(name=f"{name}/concat")([left, right])


def test_sequential_list_and_add_agree(rng):
    tlkit.utils.set_random_seed(1)
    a = tlkit.Sequential([tlkit.Input((6,)), L.Dense(4, activation="relu"), L.Dense(2)])
    b = tlkit.Sequential()
    b.add(L.Dense(4, activation="relu", input_shape=(6,)))
    b.add(L.Dense(2))
    b.set_weights(a.get_weights())
    x = rng.standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_allclose(a(x), b(x), rtol=1e-6)
    assert a.output_shape == (None, 2)
    w1, b1, w2, b2 = a.get_weights()
    np.testing.assert_allclose(a(x), np.maximum(x @ w1 + b1, 0) @ w2 + b2, rtol=1e-5, atol=1e-6)


def test_sequential_builds_lazily_from_data(rng):
    model = tlkit.Sequential([L.Dense(3), L.Dense(1)])
    assert not model.weights
    out = model(rng.standard_normal((2, 4)))
    assert out.shape == (2, 1) and len(model.weights) == 4


def test_functional_fire_module_matches_numpy(rng):
    inp = tlkit.Input((9, 9, 4))
    model = tlkit.Model(inp, fire(inp, 3, 5, "fire2"))
    assert model.output_shape == (None, 9, 9, 10)
    assert [l.name for l in model.layers][1:] == ["fire2/squeeze1x1", "fire2/expand1x1", "fire2/expand3x3",
                                                  "fire2/concat"]
    x = rng.standard_normal((2, 9, 9, 4)).astype(np.float32)
    ws, bs, w1, b1, w3, b3 = model.get_weights()
    s = np.maximum(np.einsum("nhwc,cf->nhwf", x, ws[0, 0]) + bs, 0)
    left = np.maximum(np.einsum("nhwc,cf->nhwf", s, w1[0, 0]) + b1, 0)
    padded = np.pad(s, ((0, 0), (1, 1), (1, 1), (0, 0)))
    right = sum(np.einsum("nhwc,cf->nhwf", padded[:, i:i + 9, j:j + 9], w3[i, j]) for i in range(3) for j in range(3))
    right = np.maximum(right + b3, 0)
    np.testing.assert_allclose(model(x), np.concatenate([left, right], -1), rtol=1e-4, atol=1e-5)


def test_functional_multi_io_and_shared_layer(rng):
    a, b = tlkit.Input((5,), name="a"), tlkit.Input((5,), name="b")
    shared = L.Dense(3, name="shared")
    merged = L.Add()([shared(a), shared(b)])
    out1 = L.Dense(2, name="out1")(merged)
    out2 = L.Dense(1, name="out2")(shared(a))
    model = tlkit.Model([a, b], [out1, out2])
    assert len(model.weights) == 6  # the shared layer counts once
    xa, xb = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    y1, y2 = model([xa, xb])
    y1d, _ = model({"a": xa, "b": xb})
    np.testing.assert_allclose(y1, y1d)
    w, bias = shared.get_weights()
    expected = ((xa @ w + bias) + (xb @ w + bias)) @ model.get_layer("out1").get_weights()[0]
    np.testing.assert_allclose(y1, expected + model.get_layer("out1").get_weights()[1], rtol=1e-4, atol=1e-5)
    assert y2.shape == (4, 1)


class TwoLayer(tlkit.Model):
    def __init__(self):
        super().__init__()
        self.hidden = L.Dense(4, activation="relu")
        self.out = L.Dense(2)

    def call(self, inputs, training=False):
        return self.out(self.hidden(inputs))


def test_subclassed_model_tracks_layers_and_gradients(rng):
    model = TwoLayer()
    x = rng.standard_normal((3, 5)).astype(np.float32)
    y = model(x)
    assert y.shape == (3, 2)
    assert len(model.trainable_weights) == 4 and model.layers == [model.hidden, model.out]
    with GradientTape() as tape:
        out = model(x, training=True)
    grads = tape.backprop([out], [np.ones_like(out)])
    assert {id(v) for v in model.trainable_weights} == set(grads)


def test_subclass_with_numpy_math_between_layers_is_refused(rng):
    class Bad(tlkit.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = L.Dense(3), L.Dense(2)

        def call(self, inputs, training=False):
            # np.asarray leaves the tape on purpose (Python operators on layer outputs are differentiable)
            return np.asarray(self.b(self.a(inputs))) * 2.0

    outer = tlkit.Sequential([L.Dense(5), Bad()])
    x = rng.standard_normal((2, 4))
    outer(x)
    with GradientTape(), pytest.raises(RuntimeError, match="not produced by a tlkit layer"):
        outer(x, training=True)


def test_numpy_math_inside_call_warns_about_missing_gradients(rng):
    class Leaky(tlkit.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = L.Dense(3), L.Dense(1)

        def call(self, inputs, training=False):
            return self.b(np.asarray(self.a(inputs)) * 2.0)

    model = Leaky()
    model.compile("sgd", "mse")
    with pytest.warns(UserWarning, match="Gradients do not exist for variables"):
        model.train_on_batch(rng.standard_normal((4, 2)), rng.standard_normal((4, 1)))


def test_nested_frozen_base_records_nothing(rng):
    base_in = tlkit.Input((8, 8, 3))
    base = tlkit.Model(base_in, L.Conv2D(4, 3, activation="relu")(base_in), name="base")
    base.trainable = False
    inp = tlkit.Input((8, 8, 3))
    x = base(inp, training=False)
    out = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    model = tlkit.Model(inp, out)
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2
    with GradientTape() as tape:
        model(rng.standard_normal((2, 8, 8, 3)), training=True)
    recorded = [r.layer.name for r in tape.records]
    assert recorded == [model.layers[-1].name]  # only the Dense head: GAP's input needs no gradient
    base.trainable = True
    assert len(model.trainable_weights) == 4


def test_trainable_flag_is_recursive_and_per_layer(rng):
    model = tlkit.Sequential([tlkit.Input((3,)), L.Dense(2), L.BatchNormalization(), L.Dense(1)])
    assert len(model.trainable_weights) == 6 and len(model.non_trainable_weights) == 2
    model.layers[0].trainable = False
    assert len(model.trainable_weights) == 4
    model.trainable = False
    assert model.trainable_weights == [] and not any(l.trainable for l in model.layers)


def test_summary_lists_layers_and_totals():
    model = tlkit.Sequential([tlkit.Input((4,)), L.Dense(3, name="hidden"), L.Dense(2, name="top")])
    model.layers[0].trainable = False
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "hidden (Dense)" in text and "(None, 3)" in text and "top (Dense)" in text
    assert "Total params: 23" in text and "Trainable params: 8" in text and "Non-trainable params: 15" in text


def test_summary_show_trainable_and_layer_range():
    model = tlkit.Sequential([tlkit.Input((4,)), L.Dense(3, name="hidden"), L.Dropout(0.1, name="drop"),
                              L.Dense(2, name="top")])
    model.get_layer("hidden").trainable = False
    lines = []
    model.summary(print_fn=lines.append, show_trainable=True)
    rows = {line.split()[0]: line.split()[-1] for line in lines if line.split() and "(" in line.split()[0:2][-1]}
    assert "Trainable" in lines[2]
    assert rows["hidden"] == "N" and rows["drop"] == "-" and rows["top"] == "Y"
    lines = []
    model.summary(print_fn=lines.append, layer_range=["drop", "top"])
    text = "\n".join(lines)
    assert "hidden (Dense)" not in text and "drop (Dropout)" in text and "top (Dense)" in text
    assert "Trainable" not in lines[2]
    with pytest.raises(ValueError, match="matches no layer"):
        model.summary(print_fn=lines.append, layer_range=["nope", "top"])


def test_summary_positions_and_expand_nested():
    inner = tlkit.Sequential([tlkit.Input((4,)), L.Dense(3, name="inner_a"), L.Dense(2, name="inner_b")], name="block")
    model = tlkit.Sequential([tlkit.Input((4,)), inner, L.Dense(1, name="top")])
    lines = []
    model.summary(print_fn=lines.append)
    assert not any("inner_a" in line for line in lines)  # folded by default, as Keras
    lines = []
    model.summary(print_fn=lines.append, expand_nested=True)
    names = [line.split("(")[0].strip() for line in lines if "(" in line and "params" not in line and "Model" not in line]
    assert names == ["Layer", "block", "└ inner_a", "└ inner_b", "top"]  # inner rows after their model's row
    assert "Total params: 26" in "\n".join(lines)  # counted once, not again for the expanded rows
    # positions: the columns' right edges, relative to line_length or in characters.
    lines = []
    model.summary(print_fn=lines.append, line_length=60, positions=[0.5, 0.8, 1.0])
    header = lines[2]
    assert header.index("Output Shape") == 30 and header.index("Param #") == 48 and len(lines[1]) == 60
    lines = []
    model.summary(print_fn=lines.append, positions=[20, 40, 50])
    assert lines[2].index("Output Shape") == 20 and lines[2].index("Param #") == 40 and len(lines[1]) == 50
    with pytest.raises(ValueError, match="one right edge per column"):
        model.summary(print_fn=lines.append, positions=[0.5, 1.0])


def test_get_layer_and_set_weights_errors():
    model = tlkit.Sequential([tlkit.Input((4,)), L.Dense(3, name="d")])
    assert model.get_layer("d") is model.get_layer(index=0)
    with pytest.raises(ValueError, match="No such layer: nope"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="expects 2 weight arrays"):
        model.set_weights([np.zeros((4, 3))])
    with pytest.raises(ValueError, match=r"has shape \(4, 3\).*\(3, 3\)"):
        model.set_weights([np.zeros((3, 3)), np.zeros(3)])


def test_clear_errors_for_bad_inputs(rng):
    conv = L.Conv2D(2, 3)
    conv(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"conv2d.*expected ndim=4, found ndim=3"):
        conv(np.zeros((5, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected axis -1 of input shape to have value 3.*\(1, 5, 5, 4\)"):
        conv(np.zeros((1, 5, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"7x7 kernel .* does not fit"):
        L.Conv2D(1, 7)(tlkit.Input((5, 5, 1)))
    model = tlkit.Sequential([tlkit.Input((8, 8, 3)), L.Flatten(), L.Dense(2)])
    with pytest.raises(ValueError, match=r"expects shape \(None, 8, 8, 3\).*\(2, 8, 8, 1\)"):
        model(np.zeros((2, 8, 8, 1)))
    a, b = tlkit.Input((3,)), tlkit.Input((3,))
    out = L.Add()([a, b])
    with pytest.raises(ValueError, match="Graph disconnected"):
        tlkit.Model(a, out)
    with pytest.raises(ValueError, match="list of at least 2 inputs"):
        L.Concatenate()(a)
    with pytest.raises(TypeError, match="Unrecognized keyword arguments passed to Dense"):
        L.Dense(3, unitz=4)


def test_dropout_only_in_training(rng):
    layer = L.Dropout(0.5)
    x = np.ones((200, 50), np.float32)
    np.testing.assert_array_equal(layer(x), x)
    y = layer(x, training=True)
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6


def test_batchnorm_uses_batch_stats_when_training_and_moving_otherwise(rng):
    bn = L.BatchNormalization(momentum=0.5)
    x = (rng.standard_normal((64, 3)) * 3 + 5).astype(np.float32)
    y = bn(x, training=True)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean.value, 0.5 * x.mean(0), rtol=1e-4)
    inference = bn(x)
    expected = (x - bn.moving_mean.value) / np.sqrt(bn.moving_variance.value + 1e-3)
    np.testing.assert_allclose(inference, expected, rtol=1e-4, atol=1e-4)
    bn.trainable = False  # a frozen BN runs in inference mode even when training
    np.testing.assert_allclose(bn(x, training=True), inference, rtol=1e-6)
