"""Inference as groups of images, each group run through the whole graph by one thread
(tlkit/engine/batch_split.py): the same outputs as the layer-by-layer route, the layers called one
by one and a numpy reference, on both sides of the size threshold; and the calls that must keep
the layer-by-layer route (training, a tape, a small batch, one thread, a layer not on the list)."""
import numba
import numpy as np
import pytest

import tlkit
from tests.engine.test_inference_buffers import numpy_conv, plain_run
from tlkit import layers as L
from tlkit.engine import batch_split
from tlkit.engine.tape import GradientTape
from tlkit.utils import threads

CLOSE = dict(rtol=1e-5, atol=1e-5)  # the routes round differently (ulps); a wrong group is off by O(1)


@pytest.fixture
def two_threads():
    """Groups need two threads that may run numba kernels at once."""
    if numba.config.NUMBA_NUM_THREADS < 2 or not threads.chunks_can_run_numba():
        pytest.skip("runs as groups need 2 numba threads and a threading layer that allows concurrent kernels")


@pytest.fixture
def groups_run(monkeypatch):
    """Counts the calls that ran as groups."""
    calls = []
    real = batch_split.run

    def counted(arrays, run_group):
        calls.append(len(arrays[0]))
        return real(arrays, run_group)

    monkeypatch.setattr(batch_split, "run", counted)
    return calls


def fire_model(size=(37, 35)):
    """conv1 + pool1 (fused), a fire module whose 3x3 expand takes the Winograd route, a 'same' pool,
    global pooling and a classifier: odd sizes everywhere."""
    inp = tlkit.Input(size + (3,))
    x = L.Conv2D(16, 3, strides=2, activation="relu")(inp)
    x = L.MaxPooling2D(3, strides=2)(x)
    s = L.Conv2D(16, 1, activation="relu")(x)
    x = L.Concatenate()([L.Conv2D(12, 1, activation="relu")(s), L.Conv2D(20, 3, padding="same", activation="relu")(s)])
    x = L.MaxPooling2D(2, padding="same")(x)
    return tlkit.Model(inp, L.Dense(5, activation="softmax")(L.GlobalAveragePooling2D()(x)))


def numpy_fire_model(model, x):
    (w1, b1), (ws, bs), (we1, be1), (we3, be3), (wd, bd) = [layer.get_weights() for layer in model.layers
                                                              if layer.weights]

    def max_pool(a, k, stride):
        oh, ow = (a.shape[1] - k) // stride + 1, (a.shape[2] - k) // stride + 1
        return np.max([a[:, i:i + stride * oh:stride, j:j + stride * ow:stride] for i in range(k) for j in range(k)], 0)

    x = max_pool(np.maximum(numpy_conv(x, w1, b1, 2), 0), 3, 2)
    s = np.maximum(numpy_conv(x, ws, bs), 0)
    x = np.concatenate([np.maximum(numpy_conv(s, we1, be1), 0), np.maximum(numpy_conv(s, we3, be3, 1, 1), 0)], -1)
    x = max_pool(np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=-np.inf), 2, 2)  # 'same': 8 -> 4
    logits = x.mean((1, 2)) @ wd + bd
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("batch", [4, 7, 13])
def test_groups_give_the_layer_route_s_outputs_and_numpy_s(rng, two_threads, groups_run, monkeypatch, batch):
    model = fire_model()
    x = rng.standard_normal((batch, 37, 35, 3)).astype(np.float32)
    monkeypatch.setattr(batch_split, "ENABLED", False)
    layer_route = model.predict_on_batch(x).copy()
    assert groups_run == []
    monkeypatch.setattr(batch_split, "ENABLED", None)  # small activations: the groups route, chosen
    grouped = [model.predict_on_batch(x).copy()]
    assert model._graph._programs  # each thread slot's compiled steps and buffers, kept for the next call
    for program in model._graph._programs.values():
        assert program.free
        for buf in program.free:
            buf.fill(np.nan)  # the next call writes into these: no stale value may stay
    grouped.append(model.predict_on_batch(x).copy())
    assert groups_run == [batch, batch]
    for got in grouped:
        np.testing.assert_allclose(got, layer_route, **CLOSE)
    np.testing.assert_allclose(grouped[0], plain_run(model._graph, [x])[0], **CLOSE)
    np.testing.assert_allclose(grouped[0], numpy_fire_model(model, x), rtol=1e-4, atol=1e-6)


def test_the_size_threshold_is_taken_on_both_sides(rng, two_threads, groups_run, monkeypatch):
    model = fire_model()
    largest = batch_split.largest_image_bytes(model._graph)
    # conv1's 18x17x16 output is computed inside the fused conv + pool: never held, not counted.
    assert largest == 4 * 8 * 8 * 32
    x = rng.standard_normal((6, 37, 35, 3)).astype(np.float32)
    monkeypatch.setattr(batch_split, "SPLIT_IMAGE_BYTES", largest - 4)
    above = model.predict_on_batch(x).copy()
    assert groups_run == []
    monkeypatch.setattr(batch_split, "SPLIT_IMAGE_BYTES", largest)
    at = model.predict_on_batch(x)
    assert groups_run == [6]
    np.testing.assert_allclose(at, above, **CLOSE)


def test_several_inputs_and_outputs_are_cut_and_assembled_alike(rng, two_threads, groups_run):
    a, b = tlkit.Input((9, 7, 4)), tlkit.Input((9, 7, 4))
    x = L.Add()([L.Conv2D(6, 3, padding="same", activation="relu")(a), L.Conv2D(6, 1)(b)])
    model = tlkit.Model([a, b], [x, L.Flatten()(L.MaxPooling2D(2)(x))])
    xa, xb = (rng.standard_normal((5, 9, 7, 4)).astype(np.float32) for _ in range(2))
    got = model.predict_on_batch([xa, xb])
    assert groups_run == [5]
    for g, want in zip(got, plain_run(model._graph, [xa, xb])):
        assert g.shape == want.shape
        np.testing.assert_allclose(g, want, **CLOSE)


class Doubled(L.Layer):
    def call(self, inputs, training=False):
        return inputs * 2


def test_calls_that_keep_the_layer_route(rng, two_threads, groups_run, monkeypatch):
    model = fire_model()
    x = rng.standard_normal((8, 37, 35, 3)).astype(np.float32)
    expected = plain_run(model._graph, [x])[0]
    np.testing.assert_allclose(model(x, training=True), expected, **CLOSE)  # training
    with GradientTape():  # a tape may record the call
        np.testing.assert_allclose(model(x, training=False), expected, **CLOSE)
    np.testing.assert_allclose(model.predict_on_batch(x[:3]), expected[:3], **CLOSE)  # < MIN_IMAGES per thread
    with monkeypatch.context() as m:
        m.setattr(threads, "num_threads", lambda: 1)
        np.testing.assert_allclose(model.predict_on_batch(x), expected, **CLOSE)
    assert groups_run == []
    inp = tlkit.Input((6, 6, 3))
    custom = tlkit.Model(inp, Doubled()(L.Conv2D(4, 1)(inp)))  # a layer whose call may keep state
    assert batch_split.largest_image_bytes(custom._graph) is None
    np.testing.assert_allclose(custom.predict_on_batch(x[:, :6, :6]), plain_run(custom._graph, [x[:, :6, :6]])[0],
                               **CLOSE)
    assert groups_run == []
    model.predict_on_batch(x)
    assert groups_run == [8]


def test_squeezenet_at_224_runs_as_groups_and_vgg16_does_not():
    from tlkit.zoo import VGG16, SqueezeNet

    squeezenet = batch_split.largest_image_bytes(SqueezeNet(weights=None, input_shape=(224, 224, 3))._graph)
    assert squeezenet == 4 * 55 * 55 * 128 <= batch_split.SPLIT_IMAGE_BYTES  # a fire module's concatenation
    vgg16 = batch_split.largest_image_bytes(VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))._graph)
    assert vgg16 > batch_split.SPLIT_IMAGE_BYTES
