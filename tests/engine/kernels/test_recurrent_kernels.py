"""Recurrent kernels: forward against a plain numpy loop, backward through time against central
differences in float64 (masks, states, recurrent dropout, sequence and last-output gradients)."""
import numpy as np
import pytest

from tlkit.engine.kernels.recurrent import GATES, rnn_forward, rnn_backward, transposed
from tlkit.engine.kernels.recurrent_products import padded
from tlkit.utils import threads


def _sig(v):
    return 1 / (1 + np.exp(-v))


def reference(cell, x, w, r, b, rb, h0, c0, mask, rd):
    """Straightforward per-step numpy (time-major), masked steps keep state and repeat the output."""
    h, c, prev_out, outs = h0.copy(), c0.copy(), np.zeros_like(h0), []
    u = r.shape[0]
    for t in range(x.shape[0]):
        hp = h * rd
        if cell == "lstm":
            z = x[t] @ w + b + hp @ r
            i, f, g, o = _sig(z[:, :u]), _sig(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), _sig(z[:, 3 * u:])
            cn = f * c + i * g
            hn = o * np.tanh(cn)
        elif cell == "gru":
            xz, hz = x[t] @ w + b, hp @ r + rb
            zg, rg = _sig(xz[:, :u] + hz[:, :u]), _sig(xz[:, u:2 * u] + hz[:, u:2 * u])
            hh = np.tanh(xz[:, 2 * u:] + rg * hz[:, 2 * u:])
            hn, cn = zg * h + (1 - zg) * hh, c
        elif cell == "gru_reset_before":  # Keras's reset_after=False: r scales the state before R_h
            xz, hz = x[t] @ w + b, hp @ r[:, :2 * u]
            zg, rg = _sig(xz[:, :u] + hz[:, :u]), _sig(xz[:, u:2 * u] + hz[:, u:])
            hh = np.tanh(xz[:, 2 * u:] + (rg * hp) @ r[:, 2 * u:])
            hn, cn = zg * h + (1 - zg) * hh, c
        else:
            hn, cn = np.tanh(x[t] @ w + b + hp @ r), c
        keep = mask[t][:, None] > 0
        h, c = np.where(keep, hn, h), np.where(keep, cn, c)
        prev_out = np.where(keep, hn, prev_out)
        outs.append(prev_out)
    return np.stack(outs), h, c


def _case(cell, seed=0, t=5, n=3, n_in=4, u=3):
    rng = np.random.default_rng(seed)
    g = GATES[cell] * u
    arrays = dict(x=rng.standard_normal((t, n, n_in)), w=rng.standard_normal((n_in, g)) * 0.5,
                  r=rng.standard_normal((u, g)) * 0.5, b=rng.standard_normal(g) * 0.3,
                  rb=rng.standard_normal(g) * 0.3, h0=rng.standard_normal((n, u)) * 0.5,
                  c0=rng.standard_normal((n, u)) * 0.5)
    mask = np.ones((t, n), np.uint8)
    mask[3:, 0] = 0  # right padding
    mask[0, 1] = 0  # leading masked step: output stays 0 until the first real step
    mask[2, 2] = 0  # a hole
    rd = (rng.random((n, u)) > 0.3) / 0.7
    return arrays, mask, rd


def _run(cell, a, mask, rd, parts=None):
    return rnn_forward(cell, a["x"], a["w"], a["r"], a["b"], a["rb"] if cell == "gru" else None, a["h0"], a["c0"],
                       mask, "tanh", "sigmoid", rd, parts=parts)


@pytest.mark.parametrize("parts", [1, 2, 3])  # the batch of 3 in blocks, one thread each
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_reset_before", "simple"])
def test_forward_matches_numpy_loop(cell, parts):
    a, mask, rd = _case(cell)
    seq = _run(cell, a, mask, rd, parts)
    out, h, c = reference(cell, a["x"], a["w"], a["r"], a["b"], a["rb"], a["h0"], a["c0"], mask, rd)
    np.testing.assert_allclose(seq.out, out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(seq.h[-1], h, rtol=1e-10, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(seq.c[-1], c, rtol=1e-10, atol=1e-12)
    assert np.all(seq.out[0, 1] == 0)  # masked first step: zero output, as Keras


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_reset_before", "simple"])
@pytest.mark.parametrize("use_mask", [True, False])
@pytest.mark.parametrize("parts", [1, 2])
def test_backward_through_time_matches_finite_differences(cell, use_mask, parts, monkeypatch):
    if parts == 2:  # also the products split over threads, whatever this machine's size and speed
        monkeypatch.setattr(threads, "num_threads", lambda: 2)
        monkeypatch.setattr(threads, "MIN_SPLIT_FLOPS", 0)
    a, mask, rd = _case(cell, seed=1)
    if not use_mask:
        mask, rd = None, None
    rng = np.random.default_rng(2)
    p_seq = rng.standard_normal(a["x"].shape[:2] + (3,))
    p_last, p_h, p_c = (rng.standard_normal((3, 3)) for _ in range(3))

    def loss():
        s = _run(cell, a, mask, rd)
        value = (s.out * p_seq).sum() + (s.out[-1] * p_last).sum() + (s.h[-1] * p_h).sum()
        return value + ((s.c[-1] * p_c).sum() if cell == "lstm" else 0.0)

    seq = _run(cell, a, mask, rd, parts)
    grads = rnn_backward(seq, p_seq, p_last, p_h, p_c if cell == "lstm" else None, parts=parts)
    names = {"x": "x", "w": "kernel", "r": "recurrent_kernel", "b": "bias", "h0": "h0"}
    if cell == "gru":
        names["rb"] = "recurrent_bias"
    if cell == "lstm":
        names["c0"] = "c0"
    eps = 1e-6
    for key, gname in names.items():
        arr = a[key].reshape(-1)
        num = np.empty(arr.size)
        for i in range(arr.size):
            old = arr[i]
            arr[i] = old + eps
            up = loss()
            arr[i] = old - eps
            down = loss()
            arr[i] = old
            num[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[gname].reshape(-1), num, rtol=1e-6, atol=1e-8, err_msg=f"{cell} d{key}")


def test_unknown_activation_is_a_clear_error():
    a, mask, rd = _case("simple")
    with pytest.raises(ValueError, match="supports activations"):
        rnn_forward("simple", a["x"], a["w"], a["r"], a["b"], None, a["h0"], a["c0"], None, "softmax")


@pytest.mark.parametrize("activation, recurrent_activation", [("relu", "sigmoid"), ("tanh", "hard_sigmoid")])
def test_lstm_other_activations_backward_matches_finite_differences(activation, recurrent_activation):
    """The generic path of the gate kernels (tanh + sigmoid, Keras's defaults, have their own loop)."""
    a, mask, rd = _case("lstm", seed=3)
    p_seq = np.random.default_rng(4).standard_normal(a["x"].shape[:2] + (3,))

    def run():
        return rnn_forward("lstm", a["x"], a["w"], a["r"], a["b"], None, a["h0"], a["c0"], mask, activation,
                           recurrent_activation, rd)

    grads = rnn_backward(run(), p_seq)
    eps = 1e-6
    for key, gname in (("x", "x"), ("r", "recurrent_kernel"), ("c0", "c0")):
        arr = a[key].reshape(-1)
        num = np.empty(arr.size)
        for i in range(arr.size):
            old = arr[i]
            arr[i] = old + eps
            up = (run().out * p_seq).sum()
            arr[i] = old - eps
            down = (run().out * p_seq).sum()
            arr[i] = old
            num[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[gname].reshape(-1), num, rtol=1e-6, atol=1e-8, err_msg=f"d{key}")


@pytest.mark.parametrize("shape,band", [((37, 50), 16), ((256, 1024), 16), ((5, 3), 16), ((40, 7), 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_is_a_contiguous_transpose(shape, band, dtype):
    a = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    t = transposed(a, band)
    assert t.flags.c_contiguous and t.dtype == dtype
    np.testing.assert_array_equal(t, a.T)


@pytest.mark.parametrize("pad", [0, 1, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_padded_is_a_copy_with_longer_rows(pad, dtype):
    a = np.random.default_rng(0).standard_normal((7, 12)).astype(dtype)
    p = padded(a, pad)
    assert p.dtype == dtype and p.strides == ((12 + pad) * p.itemsize, p.itemsize)
    assert not np.shares_memory(p, a)
    np.testing.assert_array_equal(p, a)


@pytest.mark.parametrize("parts", [1, 2])
def test_float32_lstm_256_units_matches_float64(parts):
    """LSTM(256): 1024 gate columns, the recurrent kernel's rows 4 KB apart, as in bench_rnn; the
    per-step product packed for gemm_blocks (or on BLAS's padded copy), float32 against the float64 numpy loop."""
    a, mask, rd = _case("lstm", seed=7, t=4, n=5, n_in=6, u=256)
    a["r"] *= 0.1  # pre-activations of order 1 with 256 units
    a32 = {k: v.astype(np.float32) for k, v in a.items()}
    seq = _run("lstm", a32, mask, rd.astype(np.float32), parts)
    out, h, c = reference("lstm", a["x"], a["w"], a["r"], a["b"], a["rb"], a["h0"], a["c0"], mask, rd)
    np.testing.assert_allclose(seq.out, out, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(seq.h[-1], h, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(seq.c[-1], c, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_reset_before", "simple"])
def test_float32_kernels_match_float64(cell, parts):
    """The float32 route (gate maths in float32 lanes, FMA contraction) against the float64 numpy loop
    forward and the float64 kernels backward (checked by finite differences above): 37 units (vector
    loops with a remainder), a batch of 5 in blocks of 2 and 3, masks and recurrent dropout."""
    a, mask, rd = _case(cell, seed=5, t=9, n=5, n_in=6, u=37)
    # A recurrent kernel whose products do not amplify rounding step after step: with _case's, the
    # SimpleRNN's gradients grow ~40x over 9 steps and float32 rounding alone (BLAS's or gemm_blocks')
    # reaches 1e-5 of their scale on some seeds; here it stays near 1e-6 for every cell.
    a["r"] *= 0.5
    a32 = {k: v.astype(np.float32) for k, v in a.items()}
    seq = _run(cell, a32, mask, rd.astype(np.float32), parts)
    assert seq.out.dtype == np.float32
    out, h, c = reference(cell, a["x"], a["w"], a["r"], a["b"], a["rb"], a["h0"], a["c0"], mask, rd)
    np.testing.assert_allclose(seq.out, out, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(seq.h[-1], h, rtol=1e-4, atol=2e-5)
    if cell == "lstm":
        np.testing.assert_allclose(seq.c[-1], c, rtol=1e-4, atol=2e-5)
    rng = np.random.default_rng(6)
    p_seq, p_h = rng.standard_normal(out.shape), rng.standard_normal(h.shape)
    ref = rnn_backward(_run(cell, a, mask, rd), p_seq, None, p_h)
    got = rnn_backward(seq, p_seq.astype(np.float32), None, p_h.astype(np.float32), parts=parts)
    for name in ("x", "kernel", "recurrent_kernel", "bias", "h0"):
        scale = np.abs(ref[name]).max()
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-5 * scale, err_msg=f"{cell} d{name}")


@pytest.mark.parametrize("full_width, per_thread", [(True, 1), (False, threads.CHUNKS_PER_THREAD)])
def test_weight_gradients_split_by_the_cpu_rule_match_float64(full_width, per_thread, monkeypatch):
    """The weight gradients' products (threads.matmul_tn over the steps) take the CPU's chunks a thread
    (recurrent_products.weight_grad_chunks: one at full-width AVX-512, CHUNKS_PER_THREAD elsewhere), split
    over 2 threads, and match the float64 kernels (checked by finite differences above)."""
    from types import SimpleNamespace

    from tlkit.engine.kernels import recurrent_products

    monkeypatch.setattr(recurrent_products, "host_cpu", SimpleNamespace(full_width=lambda cpu=None: full_width))
    monkeypatch.setattr(threads, "num_threads", lambda: 2)
    monkeypatch.setattr(threads, "MIN_SPLIT_FLOPS", 0)
    monkeypatch.setattr(threads, "MIN_CHUNK_FLOPS", 0)
    seen, matmul_tn = [], threads.matmul_tn

    def spy(a, b, out, b_sums=None, per_thread=None):
        seen.append(per_thread)
        return matmul_tn(a, b, out, b_sums, per_thread)

    monkeypatch.setattr(threads, "matmul_tn", spy)
    a, mask, rd = _case("lstm", seed=9, t=11, n=5, n_in=6, u=37)
    a["r"] *= 0.5
    a32 = {k: v.astype(np.float32) for k, v in a.items()}
    rng = np.random.default_rng(10)
    p_seq, p_h = rng.standard_normal((11, 5, 37)), rng.standard_normal((5, 37))
    ref = rnn_backward(_run("lstm", a, mask, rd), p_seq, None, p_h)
    got = rnn_backward(_run("lstm", a32, mask, rd.astype(np.float32)), p_seq.astype(np.float32), None,
                       p_h.astype(np.float32))
    assert seen == [per_thread] * 4  # dU and dW of each pass
    for name in ("kernel", "recurrent_kernel", "bias"):
        scale = np.abs(ref[name]).max()
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-5 * scale, err_msg=f"d{name}")
