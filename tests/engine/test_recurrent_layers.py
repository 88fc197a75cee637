"""Recurrent and sequence layers: gradients by finite differences through the tape (masks, states,
wrappers), Keras's shapes, masks and options, configs."""
import gc

import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.utils import workspace

from gradcheck import check


def _fn(layer, **kw):
    return lambda xs, training: layer(xs, training=training, **kw)


def _x(rng, shape=(3, 5, 4)):
    return rng.standard_normal(shape).astype(np.float32)


MASK = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1], [1, 1, 0, 1, 1]], bool)


@pytest.mark.parametrize("cls", [L.LSTM, L.GRU, L.SimpleRNN])
@pytest.mark.parametrize("options", [{}, {"return_sequences": True, "go_backwards": True}])
def test_recurrent_gradients_with_mask(rng, cls, options):
    layer = cls(4, bias_initializer="random_normal", **options)
    x = _x(rng)
    layer(x)
    check(_fn(layer, mask=MASK), [x], layer.weights, eps=1e-2, atol=5e-3)


def test_lstm_states_in_and_out_gradients(rng):
    layer = L.LSTM(3, return_state=True)
    x, h, c = _x(rng), _x(rng, (3, 3)), _x(rng, (3, 3))
    layer(x, initial_state=[h, c])

    def fn(xs, training):
        out, hh, cc = layer(xs[0], initial_state=xs[1:], training=training)
        return tlkit.ops.concatenate([out, hh, cc], axis=-1)

    check(fn, [x, h, c], layer.weights, eps=1e-2, atol=5e-3)


def test_recurrent_dropout_is_used_in_training_and_its_gradient_is_right(rng):
    layer = L.GRU(4, dropout=0.3, recurrent_dropout=0.3, seed=3)
    x = _x(rng)
    layer(x)
    a, b = layer(x, training=True), layer(x, training=True)
    assert not np.allclose(a, b)  # fresh masks per call
    np.testing.assert_array_equal(layer(x), layer(x))  # inference: no dropout
    state = layer._rng.bit_generator.state

    def fn(xs, training):  # the same masks on every evaluation
        layer._rng.bit_generator.state = state
        return layer(xs, training=True)

    check(fn, [x], layer.weights, eps=1e-2, atol=5e-3)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
def test_bidirectional_gradients_and_merge(rng, merge_mode):
    layer = L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode=merge_mode)
    x = _x(rng)
    y = layer(x)
    fwd = layer.forward_layer(x)
    bwd = layer.backward_layer(x)[:, ::-1]
    want = {"concat": np.concatenate([fwd, bwd], -1), "sum": fwd + bwd, "mul": fwd * bwd,
            "ave": (fwd + bwd) / 2}[merge_mode]
    np.testing.assert_allclose(y, want, rtol=1e-6)
    check(_fn(layer, mask=MASK), [x], layer.weights, eps=1e-2, atol=5e-3)
    names = [w.name for w in layer.weights]
    assert [n.split("/")[0][:9] for n in names] == ["forward_l"] * 3 + ["backward_"] * 3
    assert [n.split("/")[-1] for n in names] == ["kernel", "recurrent_kernel", "bias"] * 2


def test_bidirectional_none_merge_and_states(rng):
    layer = L.Bidirectional(L.GRU(3, return_state=True), merge_mode=None)
    out = layer(_x(rng))
    assert [o.shape for o in out] == [(3, 3)] * 4
    inp = tlkit.Input((5, 4))
    sym = layer(inp)
    assert [tuple(s.shape) for s in sym] == [(None, 3)] * 4


def test_backward_copy_equals_layer_on_reversed_input(rng):
    x = _x(rng)
    bi = L.Bidirectional(L.SimpleRNN(3))
    bi(x)
    plain = L.SimpleRNN(3)
    plain(x)
    plain.set_weights(bi.backward_layer.get_weights())
    np.testing.assert_allclose(bi(x)[:, 3:], plain(x[:, ::-1].copy()), rtol=1e-5)


def test_time_distributed_and_repeat_vector_gradients(rng):
    td = L.TimeDistributed(L.Dense(2))
    x = _x(rng)
    y = td(x)
    np.testing.assert_allclose(y, x @ td.layer.kernel.value + td.layer.bias.value, rtol=1e-5)
    check(_fn(td), [x], td.weights)
    rv = L.RepeatVector(3)
    v = _x(rng, (2, 4))
    np.testing.assert_array_equal(rv(v), np.repeat(v[:, None], 3, axis=1))
    check(_fn(rv), [v], [])


def test_embedding_mask_reaches_the_rnn_and_masked_pooling(rng):
    ids = np.array([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2]])
    emb = L.Embedding(10, 4, mask_zero=True)
    e = emb(ids)
    np.testing.assert_array_equal(e._keras_mask, ids != 0)
    lstm = L.LSTM(3)
    # the masked trailing steps change nothing: same as running on the real steps only
    np.testing.assert_allclose(lstm(e)[0], lstm(np.asarray(e)[:1, :3])[0], rtol=1e-5)
    seq = L.LSTM(3, return_sequences=True)(e)
    np.testing.assert_array_equal(seq._keras_mask, ids != 0)
    pooled = L.GlobalAveragePooling1D()(seq)
    np.testing.assert_allclose(pooled[0], np.asarray(seq)[0, :3].mean(0), rtol=1e-5)
    np.testing.assert_allclose(pooled[1], np.asarray(seq)[1].mean(0), rtol=1e-5)
    gap = L.GlobalAveragePooling1D()
    x = _x(rng)
    check(lambda xs, training: gap(xs, mask=MASK), [x], [])


def test_embedding_gradient_and_bad_ids(rng):
    emb = L.Embedding(6, 3)
    ids = np.array([[1, 2, 1], [5, 0, 1]])
    emb(ids)
    with tlkit.GradientTape() as tape:
        y = emb(ids, training=True)
        loss = tlkit.ops.sum(y * np.arange(3, dtype=np.float32))
    (g,) = tape.gradient(loss, [emb.embeddings])
    want = np.zeros((6, 3))
    for i in ids.ravel():
        want[i] += np.arange(3)
    np.testing.assert_allclose(g, want)
    with pytest.raises(ValueError, match="input_dim=6"):
        emb(np.array([[6]]))


def test_masking_layer(rng):
    x = _x(rng)
    x[0, 3:] = 0.0
    m = L.Masking()
    y = m(x)
    np.testing.assert_array_equal(y._keras_mask[0], [1, 1, 1, 0, 0])
    out = L.GRU(2)
    a = out(y)
    np.testing.assert_allclose(a[0], out(x[:1, :3])[0], rtol=1e-5)


def test_stateful_carries_states_between_calls(rng):
    x = _x(rng)
    layer = L.LSTM(3, stateful=True)
    first = layer(x[:, :2])
    second = layer(x[:, 2:])
    whole = L.LSTM(3)
    whole(x)
    whole.set_weights(layer.get_weights())
    np.testing.assert_allclose(second, whole(x), rtol=1e-5)
    layer.reset_states()
    np.testing.assert_allclose(layer(x[:, :2]), first, rtol=1e-6)


def test_shapes_configs_and_keras_layouts(rng):
    x = _x(rng)
    for cls, n_gates in ((L.LSTM, 4), (L.GRU, 3), (L.SimpleRNN, 1)):
        layer = cls(6, return_sequences=True, return_state=True, unroll=True, dropout=0.1)
        out = layer(x)
        assert out[0].shape == (3, 5, 6) and all(s.shape == (3, 6) for s in out[1:])
        shapes = [w.shape for w in layer.weights]
        bias = (2, 3 * 6) if cls is L.GRU else (n_gates * 6,)
        assert shapes == [(4, n_gates * 6), (6, n_gates * 6), bias]
        again = cls.from_config(layer.get_config())
        again(x)
        again.set_weights(layer.get_weights())
        np.testing.assert_allclose(again(x)[0], out[0], rtol=1e-6)
    lstm = L.LSTM(2)
    lstm(x)
    np.testing.assert_array_equal(lstm.bias.value, [0, 0, 1, 1, 0, 0, 0, 0])  # unit_forget_bias
    rk = L.GRU(5)
    rk(x)
    r = rk.recurrent_kernel.value
    np.testing.assert_allclose(r @ r.T, np.eye(5), atol=1e-5)  # Keras's orthogonal recurrent initializer


def test_clear_errors():
    with pytest.raises(ValueError, match="recurrent layer"):
        L.LSTM(3, activation="softmax")
    with pytest.raises(ValueError, match=r"\(batch, timesteps, features\)"):
        L.LSTM(3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="merge mode"):
        L.Bidirectional(L.LSTM(2), merge_mode="max")


def test_time_major_buffers_are_reused_only_when_free(rng):
    """The layer's time-major copies of x and of the output gradient come from utils.workspace: one
    whose sequence is alive must never be handed to another call, and a freed one is reused."""
    layer = L.LSTM(16, return_sequences=True)
    x1, x2 = _x(rng, (8, 130, 256)), _x(rng, (8, 130, 256))  # 1 MB time-major copies: pooled
    dy1, dy2 = _x(rng, (8, 130, 16)), _x(rng, (8, 130, 16))
    layer(x1)

    def alone(x, dy):
        out, cache = layer.forward(x, training=True)
        return out, layer.backward(cache, dy)

    # The buffers go back when their sequence is collected; gc.collect() makes that moment certain (a
    # sequence in a reference cycle would otherwise wait for the collector, and the pool would hold two).
    workspace.clear()
    ref1 = alone(x1, dy1)
    gc.collect()
    ref2 = alone(x2, dy2)
    gc.collect()
    out1, cache1 = layer.forward(x1, training=True)
    freed = cache1[0].x.ctypes.data
    del cache1
    gc.collect()
    out2, cache2 = layer.forward(x2, training=True)
    assert cache2[0].x.ctypes.data == freed  # the freed buffer is reused
    out1b, cache1b = layer.forward(x1, training=True)  # while cache2 lives: another buffer
    assert cache1b[0].x.ctypes.data != cache2[0].x.ctypes.data
    for (out, cache, dy), (ref_out, (ref_dx, ref_w)) in (((out2, cache2, dy2), ref2), ((out1b, cache1b, dy1), ref1)):
        dx, wgrads = layer.backward(cache, dy)
        np.testing.assert_allclose(out, ref_out, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-6)
        for (_, g), (_, ref_g) in zip(wgrads, ref_w):  # sums over threads' chunks: order may vary
            np.testing.assert_allclose(g, ref_g, rtol=1e-5, atol=1e-5 * np.abs(ref_g).max())
