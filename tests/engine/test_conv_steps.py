"""Frozen Conv2D steps that call their kernels straight (tlkit/engine/conv_steps.py): fire modules at odd
image sizes against a float64 numpy run of the graph, with and without threads; replays that see new
weights, an unfrozen layer, a changed activation; the route is taken where it should be."""
import numpy as np
import pytest

import tlkit
from tests.engine.test_compiled_steps import numpy_graph
from tlkit import layers as L
from tlkit.engine import conv_steps
from tlkit.utils import threads

CLOSE = {"rtol": 1e-4, "atol": 1e-4}  # Winograd and the products round differently (ulps); a wrong buffer is O(1)


def fire_net(size, channels=7, squeeze=16, expand=20, seed=0, stem=False):
    """Two fire modules (squeeze 1x1 -> expand 1x1 + expand 3x3 'same' -> concat) and a linear 1x1, frozen;
    ``stem``: after SqueezeNet's conv1 + pool1 (3x3/2 over RGB, 32 filters; 3x3/2 max pool) instead."""
    tlkit.utils.set_random_seed(seed)
    inp = tlkit.Input((size[0], size[1], 3 if stem else channels))
    x = inp
    if stem:
        x = L.MaxPooling2D(3, strides=2, name="pool1")(L.Conv2D(32, 3, strides=2, activation="relu", name="conv1")(x))
    for i in range(2):
        s = L.Conv2D(squeeze, 1, activation="relu", name=f"f{i}/squeeze")(x)
        left = L.Conv2D(expand, 1, activation="relu", name=f"f{i}/e1")(s)
        right = L.Conv2D(expand, 3, padding="same", activation="relu", name=f"f{i}/e3")(s)
        x = L.Concatenate(name=f"f{i}/concat")([left, right])
    y = L.Conv2D(5, 1, name="head")(x)
    model = tlkit.Model(inp, y)
    for layer in model.layers:  # biases away from zero: a missing bias would show
        if isinstance(layer, L.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, np.random.default_rng(len(layer.name)).uniform(-0.5, 0.5, bias.shape)])
    model.trainable = False
    return model


def direct_steps(model):
    program = model._graph._programs["layers"]
    return sum(1 for step in program.steps if step.__qualname__.startswith("direct_step"))


def replay(model, x, calls=3):
    """The outputs of ``calls`` calls on x (steps compiled at the second), each after a call on other
    values: a step that left a part of its output unwritten would show that call's values."""
    out = []
    for _ in range(calls):
        model.predict_on_batch(x[::-1] * 0.5 + 1)
        out.append(model.predict_on_batch(x).copy())
    return out


@pytest.mark.parametrize("size,batch,stem", [((11, 13), 1, False), ((17, 9), 2, False), ((23, 23), 1, False),
                                             ((39, 45), 1, True), ((37, 37), 2, True)])
@pytest.mark.parametrize("one_thread", [True, False])
def test_fire_modules_match_numpy(size, batch, stem, one_thread):
    model = fire_net(size, stem=stem)
    x = np.random.default_rng(1).standard_normal((batch, *size, 3 if stem else 7)).astype(np.float32)
    want = numpy_graph(model._graph, x)
    before = threads.num_threads()
    if one_thread:
        threads.set_numba_threads(1)
    try:
        for got in replay(model, x):
            np.testing.assert_allclose(got, want, **CLOSE)
    finally:
        threads.set_numba_threads(before)
    assert direct_steps(model) == 6 + stem  # the fire modules' convs (on one thread or alone) and the stem


def test_replays_follow_weights_trainable_and_activation():
    model = fire_net((13, 11))
    x = np.random.default_rng(2).standard_normal((1, 13, 11, 7)).astype(np.float32)
    replay(model, x)
    assert direct_steps(model) == 6  # the fire modules' convs (the head writes the output: no plan buffer)
    for layer in model.layers:  # new values assigned in place: packings and filters again
        if isinstance(layer, L.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * -0.7 + 0.01, bias + 0.3])
    np.testing.assert_allclose(model.predict_on_batch(x), numpy_graph(model._graph, x), **CLOSE)
    model.get_layer("f1/e3").trainable = True  # unfrozen: the layer's own call (no kept filter)
    np.testing.assert_allclose(model.predict_on_batch(x), numpy_graph(model._graph, x), **CLOSE)
    model.get_layer("f1/e3").trainable = False
    model.get_layer("f0/e1").activation = "linear"
    model.get_layer("f1/squeeze").kernel.assign(model.get_layer("f1/squeeze").kernel.value * 2)
    np.testing.assert_allclose(model.predict_on_batch(x), numpy_graph(model._graph, x), **CLOSE)


def test_disabled_route_and_trainable_models_take_no_direct_step(monkeypatch):
    model = fire_net((12, 12))
    x = np.random.default_rng(3).standard_normal((1, 12, 12, 7)).astype(np.float32)
    monkeypatch.setattr(conv_steps, "ENABLED", False)
    np.testing.assert_allclose(replay(model, x)[-1], numpy_graph(model._graph, x), **CLOSE)
    assert direct_steps(model) == 0
    monkeypatch.setattr(conv_steps, "ENABLED", True)
    trainable = fire_net((12, 12), seed=1)
    trainable.trainable = True
    np.testing.assert_allclose(replay(trainable, x)[-1], numpy_graph(trainable._graph, x), **CLOSE)
    assert direct_steps(trainable) == 0


def test_winograd_steps_chunk_by_chunk(monkeypatch):
    from tlkit.engine.kernels import winograd

    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one tile row a chunk (winograd.chunk_rows)
    monkeypatch.setattr(winograd, "MIN_TILES", 1)
    model = fire_net((17, 9))
    xs = [np.random.default_rng(4 + i).standard_normal((2, 17, 9, 7)).astype(np.float32) for i in range(3)]
    before = threads.num_threads()
    threads.set_numba_threads(1)
    try:  # new inputs at every call: a chunk left out would keep the previous call's values
        got = [model.predict_on_batch(x).copy() for x in xs]
    finally:
        threads.set_numba_threads(before)
    for x, y in zip(xs, got):
        np.testing.assert_allclose(y, numpy_graph(model._graph, x), **CLOSE)
    assert direct_steps(model) == 6
