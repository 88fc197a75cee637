"""Architecture round trips: Model/Sequential.from_config(model.get_config(), custom_objects=...),
to_json / models.model_from_json and models.clone_model, for Sequential and Functional models."""
import json

import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit import ops


class Scale(tlkit.layers.Layer):
    """A user layer with its own config and weight, written with ops."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return ops.multiply(inputs, self.w) * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def sequential():
    return tlkit.Sequential([tlkit.Input((4,)), L.Dense(3, activation="relu"), Scale(0.5), L.Dense(2)])


def functional(model_class=tlkit.Model):
    a, b = tlkit.Input((4,), name="a"), tlkit.Input((4,), name="b")
    shared = L.Dense(3, name="shared")
    merged = L.concatenate([shared(a), shared(b)])
    return model_class([a, b], Scale(3.0, name="scale")(L.add([merged, merged])))


def inputs_for(model, rng):
    shapes = [t.shape for t in model.inputs]
    xs = [rng.standard_normal((5,) + tuple(s[1:])).astype(np.float32) for s in shapes]
    return xs if len(xs) > 1 else xs[0]


@pytest.mark.parametrize("build", [sequential, functional], ids=["sequential", "functional"])
def test_from_config_round_trip_with_custom_objects(build, rng):
    model = build()
    config = model.get_config()
    with pytest.raises(ValueError, match="custom_objects"):
        type(model).from_config(config)  # Scale is not a built-in: the message says how to pass it
    rebuilt = type(model).from_config(json.loads(json.dumps(config)), custom_objects={"Scale": Scale})
    assert type(rebuilt) is type(model) and rebuilt.get_config() == config
    assert [type(layer).__name__ for layer in rebuilt.layers] == [type(layer).__name__ for layer in model.layers]
    rebuilt.set_weights(model.get_weights())
    x = inputs_for(model, rng)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_from_config_keeps_a_functional_subclass():
    class CustomModel(tlkit.Model):
        pass

    model = functional(CustomModel)
    rebuilt = CustomModel.from_config(model.get_config(), custom_objects={"Scale": Scale})
    assert type(rebuilt) is CustomModel
    assert rebuilt.get_layer("shared") is not model.get_layer("shared")


@pytest.mark.parametrize("build", [sequential, functional], ids=["sequential", "functional"])
def test_to_json_and_model_from_json(build, rng):
    model = build()
    text = model.to_json()
    assert json.loads(text)["class_name"] == type(model).__name__.replace("Model", "Functional")
    rebuilt = tlkit.models.model_from_json(text, custom_objects={"Scale": Scale})
    assert rebuilt.get_config() == model.get_config()
    with pytest.raises(ValueError, match="JSON text"):
        tlkit.models.model_from_json("{not json")


@pytest.mark.parametrize("build", [sequential, functional], ids=["sequential", "functional"])
def test_clone_model_has_the_architecture_and_new_weights(build, rng):
    model = build()
    clone = tlkit.models.clone_model(model)
    assert clone.get_config() == model.get_config()
    assert all(c is not m for c, m in zip(clone.weights, model.weights))
    dense_clone, dense = [next(layer for layer in m.layers if isinstance(layer, L.Dense)) for m in (clone, model)]
    assert not np.allclose(dense_clone.kernel.numpy(), dense.kernel.numpy())  # freshly initialized
    clone.set_weights(model.get_weights())
    x = inputs_for(model, rng)
    np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_clone_model_with_clone_function_and_input_tensors(rng):
    model = functional()
    seen = []

    def clone_function(layer):
        seen.append(layer.name)
        return layer.__class__.from_config({**layer.get_config(), "name": "clone_" + layer.name})

    new_inputs = [tlkit.Input((4,), name="x1"), tlkit.Input((4,), name="x2")]
    clone = tlkit.models.clone_model(model, input_tensors=new_inputs, clone_function=clone_function)
    assert seen.count("shared") == 1  # a shared layer is cloned once and stays shared
    assert clone.inputs == new_inputs and clone.get_layer("clone_shared") is not None
    clone.set_weights(model.get_weights())
    x = inputs_for(model, rng)
    np.testing.assert_allclose(clone.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_clone_model_refuses_a_subclassed_model():
    class Sub(tlkit.Model):
        def call(self, x):
            return x
    with pytest.raises(ValueError, match="subclassed"):
        tlkit.models.clone_model(Sub())


def test_layers_serialize_and_deserialize_one_layer():
    layer = tlkit.layers.Dense(3, activation="relu", name="d")
    entry = tlkit.layers.serialize(layer)
    assert entry["class_name"] == "Dense" and entry["config"]["units"] == 3
    copy = tlkit.layers.deserialize(json.loads(json.dumps(entry)))
    assert type(copy) is L.Dense and copy.get_config() == layer.get_config() and copy is not layer
    custom = tlkit.layers.deserialize(tlkit.layers.serialize(Scale(4.0)), custom_objects={"Scale": Scale})
    assert isinstance(custom, Scale) and custom.factor == 4.0
    with pytest.raises(ValueError, match="custom_objects"):
        tlkit.layers.deserialize(tlkit.layers.serialize(Scale(4.0)))
