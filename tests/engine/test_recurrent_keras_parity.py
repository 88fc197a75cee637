"""Recurrent models written by Keras 3 (weights files and legacy .h5 model files) load into tlkit and
give Keras's outputs: LSTM, GRU, SimpleRNN, go_backwards, return_state, Embedding(mask_zero=True) masks
through the recurrent layers, Bidirectional and masked GlobalAveragePooling1D.

Keras runs in the peers' Python (TLKIT_PEERS_PYTHON, default /work/peers/bin/python); the test skips
without it. Weights are drawn at random (biases included), so a wrong gate order or layout shows.
"""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L

from keras_oracle import run_keras


KERAS_SIDE = r'''
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
from keras import layers as L

out_dir = sys.argv[1]
rng = np.random.default_rng(0)
ids = rng.integers(1, 20, (6, 7))
for i, length in enumerate([7, 3, 5, 4, 6, 1]):
    ids[i, length:] = 0
ids[3, :2] = 0  # leading padding too
x = rng.standard_normal((6, 7, 5)).astype("float32")

def build(name):
    if name == "stack":
        inp = keras.Input((7,))
        h = L.Embedding(20, 5, mask_zero=True)(inp)
        h = L.LSTM(6, return_sequences=True)(h)
        h = L.GRU(4, go_backwards=True)(h)
        return keras.Model(inp, L.Dense(3)(h))
    if name == "bidirectional":
        inp = keras.Input((7,))
        h = L.Embedding(20, 5, mask_zero=True)(inp)
        h = L.Bidirectional(L.LSTM(4, return_sequences=True))(h)
        h = L.GlobalAveragePooling1D()(h)
        return keras.Model(inp, L.Dense(2)(h))
    if name == "legacy":  # a Sequential: Keras's functional configs of masked models hold op nodes (NotEqual)
        return keras.Sequential([keras.Input((7,)), L.Embedding(20, 5, mask_zero=True),
                                 L.LSTM(6, return_sequences=True), L.GRU(4, go_backwards=True)])
    if name == "states":
        inp = keras.Input((7, 5))
        seq, state = L.GRU(6, return_sequences=True, return_state=True)(inp)
        last = L.SimpleRNN(3)(seq)
        return keras.Model(inp, [seq, state, last])

for name in ("stack", "bidirectional", "states", "legacy"):
    model = build(name)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.5 for w in model.get_weights()])
    data = x if name == "states" else ids
    outs = model.predict(data, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    np.savez(os.path.join(out_dir, name + ".npz"), data=data, *outs)
    model.save_weights(os.path.join(out_dir, name + ".weights.h5"))
    if name == "legacy":
        model.save(os.path.join(out_dir, name + ".h5"))
'''


def _tlkit_model(name):
    if name == "stack":
        inp = tlkit.Input((7,))
        h = L.Embedding(20, 5, mask_zero=True)(inp)
        h = L.LSTM(6, return_sequences=True)(h)
        h = L.GRU(4, go_backwards=True)(h)
        return tlkit.models.Model(inp, L.Dense(3)(h))
    if name == "bidirectional":
        inp = tlkit.Input((7,))
        h = L.Embedding(20, 5, mask_zero=True)(inp)
        h = L.Bidirectional(L.LSTM(4, return_sequences=True))(h)
        h = L.GlobalAveragePooling1D()(h)
        return tlkit.models.Model(inp, L.Dense(2)(h))
    inp = tlkit.Input((7, 5))
    seq, state = L.GRU(6, return_sequences=True, return_state=True)(inp)
    return tlkit.models.Model(inp, [seq, state, L.SimpleRNN(3)(seq)])


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_rnn")
    run_keras(KERAS_SIDE, folder)
    return folder


def _expected(folder, name):
    saved = np.load(folder / f"{name}.npz")
    return saved["data"], [saved[f"arr_{i}"] for i in range(len(saved.files) - 1)]


def _close(got, want):
    for g, w in zip(got if isinstance(got, list) else [got], want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(w).max()))


@pytest.mark.parametrize("name", ["stack", "bidirectional", "states"])
def test_keras_weight_files_give_keras_outputs(keras_files, name):
    data, want = _expected(keras_files, name)
    model = _tlkit_model(name)
    model.load_weights(keras_files / f"{name}.weights.h5")
    _close(model.predict(data.astype(np.float32), verbose=0), want)


def test_keras_legacy_model_file_loads(keras_files):
    data, want = _expected(keras_files, "legacy")
    model = tlkit.models.load_model(keras_files / "legacy.h5", compile=False)
    assert [type(layer).__name__ for layer in model.layers] == ["Embedding", "LSTM", "GRU"]
    _close(model.predict(data.astype(np.float32), verbose=0), want)
