"""Shared checks for new layers: the forward and backward of a tlkit layer against a reference
(torch or numpy), the config round trip and the HDF5 model file round trip."""
import numpy as np

import tlkit
from tlkit.engine.tape import GradientTape


def forward_backward(layer, inputs, projection=None, seed=1):
    """(y, [dL/dx...], [dL/dw...]) of L = sum(layer(inputs) * projection) through the tape."""
    inputs = [np.ascontiguousarray(x, np.float32) for x in (inputs if isinstance(inputs, list) else [inputs])]
    with GradientTape() as tape:
        for x in inputs:
            tape.watch(x)
        y = layer(inputs if len(inputs) > 1 else inputs[0], training=True)
    if projection is None:
        projection = np.random.default_rng(seed).standard_normal(np.shape(y)).astype(np.float32)
    wgrads, xgrads = tape.backprop([y], [projection], sources=inputs)
    return np.asarray(y), projection, xgrads, [wgrads.get(id(v), (v, None))[1] for v in layer.trainable_weights]


def close(actual, expected, rtol=1e-4, what=""):
    """Equal to ``rtol`` relative to the reference's largest magnitude (float32 sums reorder)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(np.abs(expected).max(), 1e-6)
    err = np.abs(actual - expected).max() / scale
    assert err <= rtol, f"{what}: relative error {err:.2e} > {rtol:.0e}"


def config_round_trip(layer, x):
    """The layer rebuilt from its config (weights copied) computes the same outputs."""
    clone = type(layer).from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == layer.get_config()
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(layer(x)), rtol=1e-6, atol=1e-6)


def model_file_round_trip(tmp_path, layer, x):
    """A model holding the layer saves to and loads from a tlkit HDF5 file with the same outputs."""
    model = tlkit.Sequential([tlkit.Input(x.shape[1:]), layer])
    expected = model.predict(x, verbose=0)
    path = tmp_path / "model.h5"
    model.save(path)
    loaded = tlkit.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
