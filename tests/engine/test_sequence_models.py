"""Sequence models end to end: training to better than chance on labels that depend on the order of
the sequence (not on which values it holds), and model files with recurrent layers read back."""
import numpy as np

import tlkit
from tlkit import layers as L


def _order_text(rng, n=384, steps=12, vocab=12):
    """Padded token sequences holding tokens 1 and 2 once each; label: 1 comes before 2."""
    ids = np.zeros((n, steps), np.int64)
    y = np.zeros(n, np.float32)
    for i, length in enumerate(rng.integers(4, steps + 1, n)):
        seq = rng.integers(3, vocab, length)
        a, b = rng.choice(length, 2, replace=False)
        seq[a], seq[b] = 1, 2
        ids[i, :length] = seq
        y[i] = a < b
    return ids, y


def _text_model(steps=12, vocab=12):
    return tlkit.models.Sequential([tlkit.Input((steps,)), L.Embedding(vocab, 8, mask_zero=True),
                                    L.Bidirectional(L.LSTM(8)), L.Dense(1, activation="sigmoid")])


def test_text_model_learns_token_order(rng):
    ids, y = _order_text(rng)
    model = _text_model()
    model.compile(optimizer=tlkit.optimizers.Adam(0.02), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(ids[:288], y[:288], epochs=6, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(ids[288:], y[288:], verbose=0)
    assert accuracy > 0.8  # chance is 0.5: the same tokens in the other order flip the label


def test_time_series_gru_learns_direction(rng):
    x = np.sort(rng.standard_normal((384, 15, 1)).astype(np.float32), axis=1)
    label = rng.integers(0, 2, 384)
    x[label == 1] = x[label == 1][:, ::-1]  # same values, falling instead of rising
    model = tlkit.models.Sequential([tlkit.Input((15, 1)), L.GRU(8), L.Dense(2, activation="softmax")])
    model.compile(optimizer=tlkit.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x[:288], label[:288], epochs=4, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x[288:], label[288:], verbose=0)
    assert accuracy > 0.8


def _functional_model():
    inp = tlkit.Input((6, 3))
    seq, h = L.GRU(4, return_sequences=True, return_state=True)(inp)
    pooled = L.GlobalAveragePooling1D()(L.TimeDistributed(L.Dense(2))(seq))
    out = L.Concatenate()([pooled, h, L.SimpleRNN(2, go_backwards=True)(L.RepeatVector(6)(h))])
    return tlkit.models.Model(inp, out)


def test_model_files_with_recurrent_layers_round_trip(tmp_path, rng):
    ids, _ = _order_text(rng, n=8)
    model = _text_model()
    before = model.predict(ids, verbose=0)
    model.save(tmp_path / "text.h5")
    again = tlkit.models.load_model(tmp_path / "text.h5")
    np.testing.assert_allclose(again.predict(ids, verbose=0), before, rtol=1e-5)
    assert [type(layer).__name__ for layer in again.layers] == ["Embedding", "Bidirectional", "Dense"]

    functional = _functional_model()
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    want = functional.predict(x, verbose=0)
    functional.save(tmp_path / "f.h5")
    np.testing.assert_allclose(tlkit.models.load_model(tmp_path / "f.h5").predict(x, verbose=0), want, rtol=1e-5)
    functional.save_weights(tmp_path / "w.weights.h5")
    fresh = _functional_model()
    fresh.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), want, rtol=1e-5)


def test_masked_sequence_loss_counts_real_steps_only(rng):
    ids = np.array([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2], [5, 0, 0, 0, 0]] * 4)
    labels = rng.integers(0, 4, ids.shape)
    model = tlkit.models.Sequential([tlkit.Input((5,)), L.Embedding(10, 4, mask_zero=True),
                                     L.LSTM(6, return_sequences=True),
                                     L.TimeDistributed(L.Dense(4, activation="softmax"))])
    model.compile(optimizer=tlkit.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    probs = model.predict(ids, verbose=0)
    nll = -np.log(np.take_along_axis(probs, labels[..., None], axis=-1)[..., 0])
    real = ids != 0
    np.testing.assert_allclose(model.evaluate(ids, labels, verbose=0), nll[real].mean(), rtol=1e-4)
    # labels on padded steps change nothing in training
    other = labels.copy()
    other[~real] = (other[~real] + 1) % 4
    start = model.get_weights()
    model.fit(ids, labels, epochs=1, batch_size=12, shuffle=False, verbose=0)
    trained = model.get_weights()
    model.set_weights(start)
    model.fit(ids, other, epochs=1, batch_size=12, shuffle=False, verbose=0)
    for a, b in zip(trained, model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(trained[0], start[0])


def test_encoder_decoder_with_initial_state_trains_and_reloads(tmp_path, rng):
    enc_in, dec_in = tlkit.Input((6, 3)), tlkit.Input((4, 2))
    encoder = L.LSTM(5, return_state=True)
    _, h, c = encoder(enc_in)
    dec = L.LSTM(5, return_sequences=True)(dec_in, initial_state=[h, c])
    model = tlkit.models.Model([enc_in, dec_in], L.TimeDistributed(L.Dense(1))(dec))
    x = [rng.standard_normal((16, 6, 3)).astype(np.float32), rng.standard_normal((16, 4, 2)).astype(np.float32)]
    y = np.repeat(x[0][:, :1, :1], 4, axis=1)  # the decoder must learn the encoder's first step
    model.compile(optimizer=tlkit.optimizers.Adam(0.01), loss="mse")
    encoder_kernel = encoder.kernel.numpy()
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    # gradients reached the encoder through the decoder's initial state
    assert not np.allclose(encoder.kernel.numpy(), encoder_kernel)
    model.save(tmp_path / "seq2seq.h5")
    again = tlkit.models.load_model(tmp_path / "seq2seq.h5")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)
