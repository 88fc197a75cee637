"""Bidirectional(..., initial_state): the forward copy takes the first half of the states, the backward copy
the second (as Keras splits them); gradients into the states by finite differences; functional models with
state inputs save and load; Keras 3 as an optional oracle (weights transferred)."""
import json

import numpy as np
import pytest

import tlkit
from tlkit import layers as L

from gradcheck import check
from keras_oracle import run_keras

MASK = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1], [1, 1, 0, 1, 1]], bool)


def _arrays(rng, *shapes):
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_states_split_forward_then_backward(rng, merge_mode):
    x, hf, cf, hb, cb = _arrays(rng, (3, 5, 4), (3, 3), (3, 3), (3, 3), (3, 3))
    layer = L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode=merge_mode)
    y = layer(x, initial_state=[hf, cf, hb, cb], mask=MASK)
    fwd = layer.forward_layer(x, initial_state=[hf, cf], mask=MASK)
    bwd = np.asarray(layer.backward_layer(x, initial_state=[hb, cb], mask=MASK))[:, ::-1]
    want = np.concatenate([fwd, bwd], -1) if merge_mode == "concat" else fwd + bwd
    np.testing.assert_allclose(y, want, rtol=1e-6)
    assert not np.allclose(y, layer(x, mask=MASK), atol=1e-3)  # the states are really used
    with pytest.raises(ValueError, match="takes 4 initial state arrays"):
        layer(x, initial_state=[hf, cf])


def test_gradients_into_the_states(rng):
    x, hf, hb = _arrays(rng, (3, 5, 4), (3, 3), (3, 3))
    layer = L.Bidirectional(L.GRU(3, return_sequences=True, return_state=True))
    layer(x, initial_state=[hf, hb])

    def fn(xs, training):
        out = layer(xs[0], initial_state=xs[1:], training=training, mask=MASK)
        return tlkit.ops.concatenate([out[0][:, -1], out[1], out[2]], axis=-1)

    check(fn, [x, hf, hb], layer.weights, eps=1e-2, atol=5e-3)


def test_functional_model_with_state_inputs_saves_and_loads(tmp_path, rng):
    x, hf, cf, hb, cb = _arrays(rng, (2, 5, 4), (2, 3), (2, 3), (2, 3), (2, 3))
    seq = tlkit.Input((5, 4))
    states = [tlkit.Input((3,)) for _ in range(4)]
    out = L.Bidirectional(L.LSTM(3))(seq, initial_state=states)
    model = tlkit.models.Model([seq] + states, L.Dense(2)(out))
    want = model.predict([x, hf, cf, hb, cb], verbose=0)
    assert want.shape == (2, 2)
    model.save(str(tmp_path / "bidi.h5"))
    again = tlkit.models.load_model(str(tmp_path / "bidi.h5"), compile=False)
    np.testing.assert_allclose(again.predict([x, hf, cf, hb, cb], verbose=0), want, rtol=1e-6)


KERAS_SIDE = r'''
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras
d = np.load(os.path.join(sys.argv[1], "case.npz"))
layer = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))
layer.build((None, 5, 4))
layer.set_weights([d[f"w{i}"] for i in range(6)])
y = layer(d["x"], initial_state=[d["hf"], d["cf"], d["hb"], d["cb"]])
json.dump(np.asarray(y).tolist(), open(os.path.join(sys.argv[1], "keras.json"), "w"))
'''


def test_keras_splits_the_states_the_same_way(tmp_path, rng):
    x, hf, cf, hb, cb = _arrays(rng, (3, 5, 4), (3, 3), (3, 3), (3, 3), (3, 3))
    layer = L.Bidirectional(L.LSTM(3, return_sequences=True))
    layer(x)
    weights = [w + rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in layer.get_weights()]
    layer.set_weights(weights)
    np.savez(tmp_path / "case.npz", x=x, hf=hf, cf=cf, hb=hb, cb=cb, **{f"w{i}": w for i, w in enumerate(weights)})
    run_keras(KERAS_SIDE, tmp_path)
    want = np.asarray(json.loads((tmp_path / "keras.json").read_text()), np.float32)
    np.testing.assert_allclose(layer(x, initial_state=[hf, cf, hb, cb]), want, rtol=1e-4, atol=1e-5)
