"""A custom layer that defines only ``call`` gets its output shape from ``call`` in a Functional or
Sequential graph (Keras traces it), so the next layer is built for the right shape."""
import numpy as np

import tlkit
from tlkit import layers, ops


class Linear(layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")

    def call(self, inputs):
        return ops.relu(ops.matmul(inputs, self.w))


class SplitHalves(layers.Layer):
    def call(self, inputs):
        half = inputs.shape[-1] // 2
        return [inputs[..., :half], inputs[..., half:] * 2.0]


def test_custom_layer_shape_comes_from_call_in_sequential_and_trains(rng):
    model = tlkit.Sequential([tlkit.Input((3,)), Linear(4), layers.Dense(1)])
    assert model.output_shape == (None, 1)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
    model.compile(tlkit.optimizers.Adam(0.05), "mse")
    history = model.fit(x, y, epochs=30, batch_size=16, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0]


def test_custom_layer_with_several_outputs_in_a_functional_graph(rng):
    inp = tlkit.Input((6,))
    a, b = SplitHalves()(inp)
    assert a.shape == (None, 3) and b.shape == (None, 3)
    model = tlkit.Model(inp, layers.Concatenate()([a, b]))
    x = rng.standard_normal((2, 6)).astype(np.float32)
    np.testing.assert_allclose(model.predict_on_batch(x), np.concatenate([x[:, :3], 2 * x[:, 3:]], axis=1),
                               rtol=1e-6)


def test_shape_preserving_built_ins_are_not_traced():
    for layer in (layers.Activation("relu"), layers.Dropout(0.5), layers.BatchNormalization()):
        assert layer.preserves_shape
