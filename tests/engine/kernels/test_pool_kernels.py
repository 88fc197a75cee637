"""Pooling kernels against a slow, obviously-correct numpy reference (TF padding rules)."""
import numpy as np
import pytest

from tlkit.engine.kernels import pool
from tlkit.engine.kernels.geometry import pads

CASES = [  # (input hw, pool, strides, padding)
    ((6, 6), (2, 2), (2, 2), "valid"),
    ((7, 5), (2, 2), (2, 2), "same"),
    ((7, 9), (3, 3), (2, 2), "same"),
    ((8, 7), (3, 2), (1, 2), "valid"),
    ((5, 6), (3, 3), (1, 1), "same"),
    ((9, 9), (2, 3), (3, 1), "same"),
]


def reference(x, pool_size, strides, padding, op):
    n, h, w, c = x.shape
    (ph, pw), (sh, sw) = pool_size, strides
    top, bottom = pads(h, ph, sh, padding)
    left, right = pads(w, pw, sw, padding)
    oh = (h + top + bottom - ph) // sh + 1
    ow = (w + left + right - pw) // sw + 1
    y = np.zeros((n, oh, ow, c), np.float64)
    for r in range(oh):
        for q in range(ow):
            rows = [i for i in range(r * sh - top, r * sh - top + ph) if 0 <= i < h]
            cols = [j for j in range(q * sw - left, q * sw - left + pw) if 0 <= j < w]
            window = x[:, rows][:, :, cols]
            y[:, r, q] = op(window, axis=(1, 2))
    return y


@pytest.mark.parametrize("hw, pool_size, strides, padding", CASES)
def test_max_pool_forward_and_gradient_routing(rng, hw, pool_size, strides, padding):
    x = rng.permutation(np.arange(2 * hw[0] * hw[1] * 3)).reshape(2, *hw, 3).astype(np.float32)  # tie-free
    y, argmax = pool.max_pool2d_forward(x, pool_size, strides, padding)
    np.testing.assert_array_equal(y, reference(x, pool_size, strides, padding, np.max))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = pool.max_pool2d_backward(dy, argmax, x.shape)
    # Reference routing: each output's gradient goes to the input equal to that output's value.
    expected = np.zeros_like(x, dtype=np.float64)
    for n in range(x.shape[0]):
        for idx in np.ndindex(y.shape[1:]):
            where = np.argwhere(x[n] == y[n][idx])[0]
            expected[n][tuple(where)] += dy[n][idx]
    np.testing.assert_allclose(dx, expected, rtol=1e-6, atol=1e-6)
    y_only, none = pool.max_pool2d_forward(x, pool_size, strides, padding, with_argmax=False)
    assert none is None
    np.testing.assert_array_equal(y_only, y)


@pytest.mark.parametrize("hw, pool_size, strides, padding", CASES)
def test_avg_pool_forward_and_adjoint_backward(rng, hw, pool_size, strides, padding):
    x = rng.standard_normal((3, *hw, 5)).astype(np.float32)
    y = pool.avg_pool2d_forward(x, pool_size, strides, padding)
    np.testing.assert_allclose(y, reference(x, pool_size, strides, padding, np.mean), rtol=1e-5, atol=1e-6)
    # The backward is the adjoint of the (linear) forward: <A x, dy> == <x, A^T dy>.
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = pool.avg_pool2d_backward(dy, x.shape, pool_size, strides, padding)
    assert np.isclose(np.vdot(y.astype(np.float64), dy), np.vdot(x.astype(np.float64), dx), rtol=1e-4)


def test_max_pool_same_padding_never_picks_padding(rng):
    x = -np.abs(rng.standard_normal((1, 3, 3, 2))).astype(np.float32) - 1  # all negative: a zero pad would win
    y, _ = pool.max_pool2d_forward(x, (2, 2), (2, 2), "same")
    assert (y < 0).all()
    np.testing.assert_array_equal(y[0, 1, 1], x[0, 2, 2])


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="NHWC"):
        pool.max_pool2d_forward(np.zeros((3, 3, 2), np.float32), (2, 2), (2, 2), "valid")
    with pytest.raises(ValueError, match="does not fit"):
        pool.avg_pool2d_forward(np.zeros((1, 1, 1, 2), np.float32), (2, 2), (2, 2), "valid")


@pytest.mark.parametrize("chunked", [False, True], ids=["one_call", "job_chunks"])
@pytest.mark.parametrize("hw, pool_size, strides, padding", CASES[:3])
def test_inference_max_pool_on_both_routes(rng, monkeypatch, chunked, hw, pool_size, strides, padding):
    """Inference pooling as one call or as ranges of output rows on three threads (forced):
    every row pooled once, into the given out."""
    from tlkit.engine.kernels import conv_chunks
    from tlkit.utils import threads

    monkeypatch.setattr(conv_chunks, "CHUNKED", chunked)
    monkeypatch.setattr(threads, "num_threads", lambda: 3)
    x = rng.standard_normal((7, *hw, 5)).astype(np.float32)
    want = reference(x, pool_size, strides, padding, np.max)
    out = np.full(want.shape, np.nan, np.float32)
    y, argmax = pool.max_pool2d_forward(x, pool_size, strides, padding, with_argmax=False, out=out)
    assert argmax is None and y is out
    np.testing.assert_array_equal(out, want)
