"""The model and layer surface the keras-io guides use: model.input/output/inputs/outputs, layer.input/output
in Functional graphs, the lowercase merge helpers and tlkit.backend's essentials."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L


def two_input_model():
    a, b = tlkit.Input((4,), name="a"), tlkit.Input((4,), name="b")
    dense = L.Dense(3, name="hidden")
    merged = L.concatenate([dense(a), b], name="merged")
    return tlkit.Model([a, b], L.Dense(2, name="head")(merged)), a, b, dense


def test_model_and_layer_inputs_and_outputs():
    model, a, b, dense = two_input_model()
    assert model.input == [a, b] and model.inputs == [a, b]
    assert model.output is model.outputs[0] and model.output.shape == (None, 2)
    assert dense.input is a and dense.output.shape == (None, 3)
    merged = model.get_layer("merged")
    assert merged.input == [dense.output, b]  # a merge layer's input is its list
    assert model.get_layer("head").input is merged.output
    seq = tlkit.Sequential([tlkit.Input((3,)), L.Dense(5), L.Dense(1)])
    assert seq.input.shape == (None, 3) and seq.output.shape == (None, 1)
    assert seq.layers[1].input is seq.layers[0].output


def test_feature_extraction_from_layer_outputs():
    # The functional-API guide: a model whose outputs are every layer's output.
    model, *_ = two_input_model()
    features = tlkit.Model(inputs=model.inputs, outputs=[layer.output for layer in model.layers[2:]])
    rng = np.random.default_rng(0)
    xa, xb = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    hidden, merged, head = features([xa, xb])
    w, bias = model.get_layer("hidden").get_weights()
    np.testing.assert_allclose(hidden, xa @ w + bias, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(merged, np.concatenate([hidden, xb], axis=1), rtol=1e-6)
    np.testing.assert_allclose(head, model.predict([xa, xb], verbose=0), rtol=1e-5)


def test_an_unconnected_layer_or_a_subclassed_model_has_no_input():
    with pytest.raises(AttributeError, match="never called on a symbolic tensor"):
        L.Dense(2).output

    class Sub(tlkit.Model):
        def call(self, x):
            return x
    with pytest.raises(AttributeError, match="subclassed model"):
        Sub().input
    assert not hasattr(L.Dense(2), "input")


def test_lowercase_merge_helpers_build_their_layers():
    a, b = tlkit.Input((3,)), tlkit.Input((3,))
    model = tlkit.Model([a, b], [L.add([a, b]), L.concatenate([a, b], axis=-1)])
    assert [type(layer).__name__ for layer in model.layers[2:]] == ["Add", "Concatenate"]
    x, y = np.ones((2, 3), np.float32), np.full((2, 3), 2.0, np.float32)
    total, joined = model([x, y])
    np.testing.assert_allclose(total, x + y)
    np.testing.assert_allclose(joined, np.concatenate([x, y], axis=-1))

    helpers = [L.multiply([a, b]), L.maximum([a, b]), L.minimum([a, b]), L.average([a, b]), L.subtract([a, b]),
               L.dot([a, b], axes=1)]
    model = tlkit.Model([a, b], helpers)
    assert [type(layer).__name__ for layer in model.layers[2:]] == ["Multiply", "Maximum", "Minimum", "Average",
                                                                    "Subtract", "Dot"]
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    expected = [x * y, np.maximum(x, y), np.minimum(x, y), (x + y) / 2, x - y, np.sum(x * y, 1, keepdims=True)]
    for got, want in zip(model([x, y]), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_backend_essentials():
    backend = tlkit.backend
    assert (backend.floatx(), backend.image_data_format(), backend.epsilon()) == ("float32", "channels_last", 1e-7)
    assert backend.backend() == "numpy"
    backend.set_floatx("float32")  # the supported values are accepted
    backend.set_image_data_format("channels_last")
    with pytest.raises(ValueError, match="channels_last"):
        backend.set_image_data_format("channels_first")
    with pytest.raises(ValueError, match="float32"):
        backend.set_floatx("float64")
    L.Dense(1), L.Dense(1)
    backend.clear_session()
    assert L.Dense(1).name == "dense" and L.Dense(1).name == "dense_1"
