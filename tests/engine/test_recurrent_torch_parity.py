"""LSTM and GRU forward and backward against torch.nn.LSTM/GRU with converted weights (torch's GRU is
the reset_after form), including right-padded masks (torch's packed sequences), return_sequences and
return_state, go_backwards and initial states."""
import numpy as np
import pytest

from tlkit import layers as L
from tlkit.engine.tape import GradientTape

torch = pytest.importorskip("torch")


def _to_torch_order(a, cell, u):
    """Keras gate blocks on the last axis -> torch's (LSTM: same i, f, g, o; GRU: z, r, h -> r, z, n)."""
    if cell == "gru":
        a = np.concatenate([a[..., u:2 * u], a[..., :u], a[..., 2 * u:]], axis=-1)
    return a


def _from_torch_order(a, cell, u):
    if cell == "gru":
        a = np.concatenate([a[..., u:2 * u], a[..., :u], a[..., 2 * u:]], axis=-1)
    return a


def _torch_module(layer, cell, n_in, u):
    mod = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(n_in, u, batch_first=True)
    k, rk, b = (w.value for w in layer.weights)
    b_in, b_rec = (b, np.zeros_like(b)) if cell == "lstm" else (b[0], b[1])
    with torch.no_grad():
        mod.weight_ih_l0.copy_(torch.from_numpy(_to_torch_order(k, cell, u).T.copy()))
        mod.weight_hh_l0.copy_(torch.from_numpy(_to_torch_order(rk, cell, u).T.copy()))
        mod.bias_ih_l0.copy_(torch.from_numpy(_to_torch_order(b_in, cell, u).copy()))
        mod.bias_hh_l0.copy_(torch.from_numpy(_to_torch_order(b_rec, cell, u).copy()))
    return mod


def _close(a, b, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(b).max()), err_msg=what)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_forward_and_backward_match_torch(rng, cell, masked, go_backwards):
    n, t_len, n_in, u = 5, 7, 6, 8
    cls = L.LSTM if cell == "lstm" else L.GRU
    layer = cls(u, return_sequences=True, return_state=True, go_backwards=go_backwards,
                bias_initializer="random_normal")
    x = rng.standard_normal((n, t_len, n_in)).astype(np.float32)
    lengths = np.array([7, 3, 5, 1, 6]) if masked else np.full(n, t_len)
    mask = np.arange(t_len)[None, :] < lengths[:, None]
    h0 = rng.standard_normal((n, u)).astype(np.float32) * 0.5
    c0 = rng.standard_normal((n, u)).astype(np.float32) * 0.5
    states = [h0, c0] if cell == "lstm" else [h0]
    layer(x, initial_state=states)  # build
    mod = _torch_module(layer, cell, n_in, u)

    # torch: the backward direction of a padded batch = each sample's real steps reversed, padding after
    xt = x.copy()
    if go_backwards:
        for i, length in enumerate(lengths):
            xt[i, :length] = x[i, :length][::-1]
    # tlkit's outputs come in processing order: with go_backwards a sample's real steps are the last `length`
    real = mask[:, ::-1] if go_backwards else mask
    p_seq = rng.standard_normal((n, t_len, u)).astype(np.float32) * real[..., None]
    p_states = [rng.standard_normal((n, u)).astype(np.float32) for _ in states]
    p_seq_t = np.zeros_like(p_seq)
    for i, length in enumerate(lengths):
        p_seq_t[i, :length] = p_seq[i, t_len - length:] if go_backwards else p_seq[i, :length]

    x_t = torch.from_numpy(xt).requires_grad_()
    s_t = [torch.from_numpy(s[None]).requires_grad_() for s in states]
    packed = torch.nn.utils.rnn.pack_padded_sequence(x_t, torch.from_numpy(lengths), batch_first=True,
                                                     enforce_sorted=False)
    out_p, st = mod(packed, tuple(s_t) if cell == "lstm" else s_t[0])
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True, total_length=t_len)
    st = list(st) if cell == "lstm" else [st]
    loss = (out_t * torch.from_numpy(p_seq_t)).sum() + sum((s[0] * torch.from_numpy(p)).sum()
                                                           for s, p in zip(st, p_states))
    loss.backward()

    xs = [x] + states
    with GradientTape() as tape:
        for a in xs:
            tape.watch(a)
        outs = layer(x, mask=mask if masked else None, initial_state=states)
    wgrads, xgrads = tape.backprop(outs, [p_seq] + p_states, sources=xs)

    seq = np.asarray(outs[0])
    ref = out_t.detach().numpy()
    for i, length in enumerate(lengths):
        got = seq[i, t_len - length:] if go_backwards else seq[i, :length]
        _close(got, ref[i, :length], f"{cell} outputs of sample {i}")
        assert np.all(seq[i, :t_len - length] == 0) if go_backwards else True  # masked before any real step
    for s_ours, s_ref in zip(outs[1:], st):
        _close(s_ours, s_ref.detach().numpy()[0], f"{cell} final state")

    gx = x_t.grad.numpy().copy()
    if go_backwards:
        for i, length in enumerate(lengths):
            gx[i, :length] = gx[i, :length][::-1].copy()
    _close(xgrads[0], gx, f"{cell} d input")
    for g_ours, s in zip(xgrads[1:], s_t):
        _close(g_ours, s.grad.numpy()[0], f"{cell} d initial state")
    k, rk, b = layer.weights
    dk, drk, db = (wgrads[id(v)][1] for v in (k, rk, b))
    _close(dk, _from_torch_order(mod.weight_ih_l0.grad.numpy().T, cell, u), f"{cell} d kernel")
    _close(drk, _from_torch_order(mod.weight_hh_l0.grad.numpy().T, cell, u), f"{cell} d recurrent_kernel")
    gb_in = _from_torch_order(mod.bias_ih_l0.grad.numpy(), cell, u)
    gb_rec = _from_torch_order(mod.bias_hh_l0.grad.numpy(), cell, u)
    if cell == "lstm":
        _close(db, gb_in, "lstm d bias")
        _close(db, gb_rec, "lstm d bias (recurrent side)")
    else:
        _close(db, np.stack([gb_in, gb_rec]), "gru d bias (2, 3u)")
