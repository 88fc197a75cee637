"""Keras masks carried through Dense, Dropout, activation and normalization layers and TimeDistributed,
consumed by recurrent layers, GlobalAveragePooling1D, losses and metrics (masked steps count in neither,
as Keras 3 folds the mask into the sample weights): against numpy, and Keras 3 when installed."""
import json

import numpy as np
import pytest

import tlkit
from tlkit import layers as L

from keras_oracle import run_keras



def _ids(rng, n=5, steps=6, vocab=12):
    ids = rng.integers(1, vocab, (n, steps))
    for i, length in enumerate([6, 2, 4, 1, 5][:n]):
        ids[i, length:] = 0
    return ids


def _tagger():
    return tlkit.models.Sequential([
        tlkit.Input((6,)), L.Embedding(12, 5, mask_zero=True), L.LSTM(4, return_sequences=True), L.Dropout(0.3),
        L.Dense(6), L.LayerNormalization(), L.ReLU(), L.TimeDistributed(L.Dense(3)), L.Activation("softmax")])


def test_mask_reaches_the_output_through_every_pass_through_layer(rng):
    ids = _ids(rng)
    model = _tagger()
    x = ids
    for layer in model.layers:
        x = layer(x, training=True)
        np.testing.assert_array_equal(x._keras_mask, ids != 0, err_msg=type(layer).__name__)
    np.testing.assert_array_equal(model(ids)._keras_mask, ids != 0)
    # Layers that change the step axis do not pass it (Keras: Flatten, global pooling consume it).
    assert getattr(L.Flatten()(x), "_keras_mask", None) is None
    assert getattr(L.GlobalAveragePooling1D()(x), "_keras_mask", None) is None


def test_pooling_after_dense_averages_the_real_steps_only(rng):
    ids = _ids(rng)
    emb, dense = L.Embedding(12, 5, mask_zero=True), L.Dense(4)
    h = dense(emb(ids))
    got = L.GlobalAveragePooling1D()(h)
    m = (ids != 0)[..., None]
    want = (np.asarray(h) * m).sum(axis=1) / m.sum(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # the same through a model's predict (its inference path) and a Functional model
    model = tlkit.models.Sequential([tlkit.Input((6,)), emb, dense, L.Dropout(0.5), L.GlobalAveragePooling1D()])
    np.testing.assert_allclose(model.predict(ids, verbose=0), want, rtol=1e-6)
    inp = tlkit.Input((6,))
    functional = tlkit.models.Model(inp, L.GlobalAveragePooling1D()(dense(emb(inp))))
    np.testing.assert_allclose(functional.predict(ids, verbose=0), want, rtol=1e-6)


def _reference_loss_and_accuracy(probs, labels, mask):
    p = np.take_along_axis(probs.astype(np.float64), labels[..., None], axis=-1)[..., 0]
    ce = -np.log(np.clip(p, 1e-7, 1 - 1e-7))
    hit = probs.argmax(-1) == labels
    return ce[mask].mean(), hit[mask].mean()


def test_loss_and_metrics_leave_masked_steps_out(rng):
    ids = _ids(rng)
    labels = rng.integers(0, 3, ids.shape)
    model = _tagger()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, acc = model.evaluate(ids, labels, batch_size=len(ids), verbose=0)
    want_loss, want_acc = _reference_loss_and_accuracy(model.predict(ids, verbose=0), labels, ids != 0)
    assert loss == pytest.approx(want_loss, rel=1e-5) and acc == pytest.approx(want_acc, rel=1e-6)
    # the labels of masked steps change nothing: neither the loss nor the step taken
    other = np.where(ids != 0, labels, (labels + 1) % 3)
    assert model.evaluate(ids, other, batch_size=len(ids), verbose=0) == pytest.approx([loss, acc], rel=1e-6)
    weights = model.get_weights()
    tlkit.utils.set_random_seed(0)
    model.train_on_batch(ids, labels)
    after = model.get_weights()
    model.set_weights(weights)
    tlkit.utils.set_random_seed(0)
    model.train_on_batch(ids, other)
    for a, b in zip(after, model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_metric_combines_the_mask_with_sample_weights(rng):
    y_true = np.array([[0, 1, 2], [2, 1, 0]])
    y_pred = tlkit.ops.convert_to_tensor(np.eye(3, dtype=np.float32)[[[0, 1, 1], [2, 0, 0]]])
    y_pred._keras_mask = np.array([[True, True, True], [True, True, False]])  # hits: [1, 1, 0], [1, 0, (1)]
    metric = tlkit.metrics.SparseCategoricalAccuracy()
    metric.update_state(y_true, y_pred)
    assert metric.result() == pytest.approx(3 / 5)
    metric.reset_state()
    metric.update_state(y_true, y_pred, sample_weight=np.array([[1.0] * 3, [3.0] * 3]))  # per-step weights
    assert metric.result() == pytest.approx((2 + 3 * 1) / (3 + 3 * 2))


KERAS_SIDE = r'''
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras
from keras import layers as L
d = np.load(os.path.join(sys.argv[1], "case.npz"))
model = keras.Sequential([keras.Input((6,)), L.Embedding(12, 5, mask_zero=True), L.LSTM(4, return_sequences=True),
                          L.Dropout(0.3), L.Dense(6), L.LayerNormalization(), L.ReLU(),
                          L.TimeDistributed(L.Dense(3)), L.Activation("softmax")])
model.set_weights([d[f"w{i}"] for i in range(len(model.get_weights()))])
model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
result = model.evaluate(d["ids"], d["labels"], batch_size=len(d["ids"]), verbose=0)
json.dump(result, open(os.path.join(sys.argv[1], "keras.json"), "w"))
'''


def test_keras_gives_the_same_masked_loss_and_accuracy(tmp_path, rng):
    ids = _ids(rng)
    labels = rng.integers(0, 3, ids.shape)
    model = _tagger()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    weights = [w + rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in model.get_weights()]
    model.set_weights(weights)
    np.savez(tmp_path / "case.npz", ids=ids, labels=labels, **{f"w{i}": w for i, w in enumerate(weights)})
    run_keras(KERAS_SIDE, tmp_path)
    want = json.loads((tmp_path / "keras.json").read_text())
    got = model.evaluate(ids, labels, batch_size=len(ids), verbose=0)
    assert got == pytest.approx(want, rel=1e-4)


def test_time_distributed_passes_each_steps_mask_to_the_inner_layer(rng):
    """A hierarchical text model: words -> one vector per sentence (TimeDistributed LSTM) -> one per document.
    Each sentence's LSTM sees only its own words, and an all-padding sentence is skipped by the outer LSTM."""
    docs = rng.integers(1, 20, (3, 4, 5))  # (documents, sentences, words)
    lengths = [[5, 2, 3, 0], [1, 4, 0, 0], [3, 3, 5, 2]]
    for d, row in enumerate(lengths):
        for s, n in enumerate(row):
            docs[d, s, n:] = 0
    embed, words, sentences = L.Embedding(20, 6, mask_zero=True), L.LSTM(4), L.LSTM(3)
    inp = tlkit.Input((4, 5))
    model = tlkit.Model(inp, sentences(L.TimeDistributed(words)(embed(inp))))
    got = model.predict(docs, verbose=0)
    vectors = embed(docs)
    for d, row in enumerate(lengths):
        kept = [s for s, n in enumerate(row) if n]
        # each sentence alone, padding words cut off: what its step of the TimeDistributed LSTM must give
        per_sentence = np.stack([np.asarray(words(np.asarray(vectors)[d:d + 1, s, :row[s]]))[0] for s in kept])
        expected = np.asarray(sentences(per_sentence[None]))[0]  # the document without its empty sentences
        np.testing.assert_allclose(got[d], expected, rtol=1e-5, atol=1e-6)
