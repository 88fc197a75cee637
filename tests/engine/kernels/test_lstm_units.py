"""The LSTM's unit split (each thread owns a block of units, its whole time loop one numba call):
against the batch split, a float64 numpy reference and central differences; masks, initial states,
odd unit counts and batches; the fallback when scipy (numba's np.dot) is absent."""
import numpy as np
import pytest

from tlkit import layers as L
from tlkit import ops
from tlkit.engine.kernels import lstm_units
from tlkit.engine.kernels.recurrent import rnn_backward, rnn_forward
from tlkit.engine.tape import GradientTape
from tlkit.utils import threads

from test_recurrent_kernels import reference

pytest.importorskip("scipy")  # the unit split's per-step products are numba's np.dot (scipy's BLAS)


def _case(dtype, t=6, n=5, n_in=3, u=37, seed=0):
    rng = np.random.default_rng(seed)
    a = dict(x=rng.standard_normal((t, n, n_in)), w=rng.standard_normal((n_in, 4 * u)) * 0.4,
             r=rng.standard_normal((u, 4 * u)) * 0.2, b=rng.standard_normal(4 * u) * 0.3,
             h0=rng.standard_normal((n, u)) * 0.5, c0=rng.standard_normal((n, u)) * 0.5)
    mask = np.ones((t, n), np.uint8)
    mask[4:, 0] = 0  # right padding
    mask[0, 1] = 0  # a leading masked step
    mask[2, n - 1] = 0  # a hole
    return {k: v.astype(dtype) for k, v in a.items()}, mask


def _forward(a, mask, unit_blocks):
    return rnn_forward("lstm", a["x"], a["w"], a["r"], a["b"], None, a["h0"], a["c0"], mask, "tanh", "sigmoid",
                       None, unit_blocks=unit_blocks)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("u, blocks", [(37, 2), (40, 2), (50, 3)])
def test_unit_split_matches_batch_split_and_reference(dtype, rtol, u, blocks):
    a, mask = _case(dtype, u=u)
    rng = np.random.default_rng(1)
    d_seq, d_last, d_h, d_c = (rng.standard_normal(s).astype(dtype) for s in
                               [a["x"].shape[:2] + (u,)] + [(a["x"].shape[1], u)] * 3)
    split = _forward(a, mask, blocks)
    assert split.perm is not None and len(split.bounds) == blocks + 1  # the route under test ran
    plain = _forward(a, mask, 0)
    out, h, c = reference("lstm", *(a[k].astype(np.float64) for k in ("x", "w", "r", "b")), None,
                          a["h0"].astype(np.float64), a["c0"].astype(np.float64), mask, 1.0)
    for got, want in ((split.out, out), (split.h[-1], h), (split.c[-1], c)):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(split.out, plain.out, rtol=rtol, atol=rtol)
    for d_out in (d_seq, None):
        g_split = rnn_backward(split, d_out, d_last, d_h, d_c)
        g_plain = rnn_backward(plain, d_out, d_last, d_h, d_c)
        for name in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0"):
            scale = np.abs(g_plain[name]).max()
            np.testing.assert_allclose(g_split[name], g_plain[name], rtol=rtol, atol=rtol * scale, err_msg=name)


def test_unit_split_gradients_match_finite_differences():
    a, mask = _case(np.float64, t=4, n=3, n_in=2, u=34, seed=2)
    rng = np.random.default_rng(3)
    p_seq = rng.standard_normal((4, 3, 34))
    p_h, p_c = rng.standard_normal((3, 34)), rng.standard_normal((3, 34))

    def loss():
        s = _forward(a, mask, 2)
        return (s.out * p_seq).sum() + (s.h[-1] * p_h).sum() + (s.c[-1] * p_c).sum()

    grads = rnn_backward(_forward(a, mask, 2), p_seq, None, p_h, p_c)
    names = {"x": "x", "w": "kernel", "r": "recurrent_kernel", "b": "bias", "h0": "h0", "c0": "c0"}
    eps = 1e-6
    for key, gname in names.items():
        flat, got = a[key].reshape(-1), grads[gname].reshape(-1)
        for i in rng.choice(flat.size, size=min(flat.size, 24), replace=False):  # every gate and unit block in reach
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            np.testing.assert_allclose(got[i], (up - down) / (2 * eps), rtol=1e-6, atol=1e-8, err_msg=f"d{key}[{i}]")


def test_route_choice_and_fallback_without_scipy(monkeypatch):
    monkeypatch.setattr(threads, "num_threads", lambda: 2)
    assert lstm_units.use_unit_blocks(64, 256, None) == 2
    assert lstm_units.use_unit_blocks(64, 256, np.ones((64, 256))) == 0  # recurrent dropout: batch split
    assert lstm_units.use_unit_blocks(2, 16, None) == 0  # steps too short
    monkeypatch.setitem(lstm_units._state, "available", False)  # as without scipy
    assert lstm_units.use_unit_blocks(64, 256, None) == 0
    a, mask = _case(np.float32, n=64, u=40)
    seq = rnn_forward("lstm", a["x"], a["w"], a["r"], a["b"], None, a["h0"], a["c0"], mask, "tanh", "sigmoid")
    assert seq.perm is None
    with pytest.raises(ValueError, match="scipy"):
        _forward(a, mask, 2)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_layer_on_the_unit_split_equals_the_batch_split(monkeypatch, go_backwards):
    """Through the layer: return_sequences and return_state, go_backwards, a mask, a batch of 5."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 7, 6)).astype(np.float32)
    mask = np.ones((5, 7), bool)
    mask[0, 5:] = False
    layer = L.LSTM(37, return_sequences=True, return_state=True, go_backwards=go_backwards)
    layer(x[:1])
    monkeypatch.setattr(threads, "num_threads", lambda: 2)
    monkeypatch.setattr(lstm_units, "MIN_STEP_FLOPS", 0)
    calls = []
    forward = lstm_units.forward
    monkeypatch.setattr(lstm_units, "forward", lambda *args: calls.append(1) or forward(*args))
    runs = {}
    for route, choose in (("units", lstm_units.use_unit_blocks), ("batch", lambda *args: 0)):
        monkeypatch.setattr(lstm_units, "use_unit_blocks", choose)
        with GradientTape() as tape:
            tape.watch(x)
            outs = layer(x, mask=mask, training=True)
            loss = ops.sum(outs[0] * outs[0]) + 2.0 * ops.sum(outs[1]) + 3.0 * ops.sum(outs[2])
        runs[route] = [np.asarray(o) for o in outs] + [np.asarray(g) for g in
                                                       tape.gradient(loss, [x] + layer.trainable_weights)]
    assert len(calls) == 1  # the unit split ran once (its route), the batch split the other time
    for got, want in zip(runs["units"], runs["batch"]):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
