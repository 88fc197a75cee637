"""GRU(reset_after=False), Keras 2's GRU: weight layout, forward against a numpy loop, gradients by finite
differences through the tape (masks, go_backwards, states, dropout), config round trip, and Keras 3 as an
optional oracle (weights transferred; run in the peers' Python, skipped when absent)."""
import json

import numpy as np
import pytest

import tlkit
from tlkit import layers as L

from gradcheck import analytic, check
from keras_oracle import run_keras

MASK = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1], [1, 1, 0, 1, 1]], bool)


def _sig(v):
    return 1 / (1 + np.exp(-v))


def numpy_gru(x, kernel, recurrent_kernel, bias, mask=None, h0=None):
    """Keras's GRU cell with reset_after=False, batch-major, masked steps keep the state and output."""
    n, steps, _ = x.shape
    u = recurrent_kernel.shape[0]
    h = np.zeros((n, u)) if h0 is None else h0.astype(np.float64)
    out, outs = np.zeros((n, u)), []
    for t in range(steps):
        xw = x[:, t] @ kernel + bias
        z = _sig(xw[:, :u] + h @ recurrent_kernel[:, :u])
        r = _sig(xw[:, u:2 * u] + h @ recurrent_kernel[:, u:2 * u])
        hh = np.tanh(xw[:, 2 * u:] + (r * h) @ recurrent_kernel[:, 2 * u:])
        new = z * h + (1 - z) * hh
        keep = np.ones((n, 1), bool) if mask is None else mask[:, t:t + 1]
        h, out = np.where(keep, new, h), np.where(keep, new, out)
        outs.append(out)
    return np.stack(outs, axis=1), h


def _layer(rng, x, **kw):
    layer = L.GRU(4, reset_after=False, bias_initializer="random_normal", **kw)
    layer(x)
    return layer


def test_keras_weight_shapes_and_numpy_reference(rng):
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    layer = _layer(rng, x, return_sequences=True, return_state=True)
    assert [w.shape for w in layer.weights] == [(2, 12), (4, 12), (12,)]
    h0 = rng.standard_normal((3, 4)).astype(np.float32)
    seq, state = layer(x, mask=MASK, initial_state=h0)
    want_seq, want_h = numpy_gru(x, *layer.get_weights(), mask=MASK, h0=h0)
    np.testing.assert_allclose(seq, want_seq, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state, want_h, rtol=1e-5, atol=1e-6)
    # the other formulation really differs on the same weights (the reset gate's place matters)
    after = L.GRU(4, reset_after=True, return_sequences=True)
    after(x)
    w = layer.get_weights()
    after.set_weights([w[0], w[1], np.stack([w[2], np.zeros_like(w[2])])])
    assert not np.allclose(after(x), layer(x)[0], atol=1e-3)


@pytest.mark.parametrize("options", [{}, {"return_sequences": True, "go_backwards": True}])
def test_gradients_with_mask(rng, options):
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    layer = _layer(rng, x, **options)
    check(lambda xs, training: layer(xs, training=training, mask=MASK), [x], layer.weights, eps=1e-2, atol=5e-3)


def test_state_and_dropout_gradients(rng):
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    h0 = rng.standard_normal((3, 4)).astype(np.float32)
    layer = L.GRU(4, reset_after=False, return_state=True, dropout=0.3, recurrent_dropout=0.3, seed=1)
    layer(x, initial_state=h0)
    state = layer._rng.bit_generator.state

    def fn(xs, training):  # the same dropout masks on every evaluation
        layer._rng.bit_generator.state = state
        out, h = layer(xs[0], initial_state=xs[1], training=True)
        return tlkit.ops.concatenate([out, h], axis=-1)

    check(fn, [x, h0], layer.weights, eps=1e-2, atol=5e-3)


def test_config_round_trip_and_model_file(tmp_path, rng):
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    model = tlkit.models.Sequential([tlkit.Input((5, 2)), L.GRU(4, reset_after=False, bias_initializer="ones"),
                                     L.Dense(1)])
    want = model.predict(x, verbose=0)
    assert model.layers[0].get_config()["reset_after"] is False
    path = str(tmp_path / "gru.h5")
    model.save(path)
    again = tlkit.models.load_model(path, compile=False)
    assert again.layers[0].reset_after is False and again.layers[0].bias.shape == (12,)
    np.testing.assert_allclose(again.predict(x, verbose=0), want, rtol=1e-6)


KERAS_SIDE = r'''
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, tensorflow as tf, keras
folder = sys.argv[1]
d = np.load(os.path.join(folder, "case.npz"))
results = {}
for go_backwards in (False, True):
    layer = keras.layers.GRU(4, reset_after=False, return_sequences=True, go_backwards=go_backwards)
    layer.build((None,) + d["x"].shape[1:])
    layer.set_weights([d["kernel"], d["recurrent_kernel"], d["bias"]])
    x = tf.constant(d["x"])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, mask=tf.constant(d["mask"]))
        loss = tf.reduce_sum(y * d["probe"])
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    results[str(go_backwards)] = [np.asarray(y).tolist()] + [np.asarray(g).tolist() for g in grads]
json.dump(results, open(os.path.join(folder, "keras.json"), "w"))
'''


def test_matches_keras_forward_and_gradients(tmp_path, rng):
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    probe = rng.standard_normal((3, 5, 4)).astype(np.float32)
    layer = _layer(rng, x)
    kernel, recurrent_kernel, bias = layer.get_weights()
    np.savez(tmp_path / "case.npz", x=x, mask=MASK, probe=probe, kernel=kernel, recurrent_kernel=recurrent_kernel,
             bias=bias)
    run_keras(KERAS_SIDE, tmp_path)
    keras = json.loads((tmp_path / "keras.json").read_text())
    for go_backwards in (False, True):
        ours = L.GRU(4, reset_after=False, return_sequences=True, go_backwards=go_backwards)
        ours(x)
        ours.set_weights([kernel, recurrent_kernel, bias])
        y = ours(x, mask=MASK)
        xgrads, wgrads = analytic(lambda xs, layer=ours: layer(xs, mask=MASK), [x], ours.trainable_weights, probe)
        for got, want in zip([y] + xgrads + wgrads, keras[str(go_backwards)]):
            want = np.asarray(want, np.float32)
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))
