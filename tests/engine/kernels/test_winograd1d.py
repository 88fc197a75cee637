"""The 1-D Winograd convolution (kernels/winograd1d.py) against a float64 numpy reference, and
conv_nd's routing to it (forced both ways, whatever the shapes' thresholds say)."""
import numpy as np
import pytest

from tlkit.engine.kernels import conv_nd, winograd1d


def reference(x, w, b, before, after, dilation):
    """y[n, t] = b + sum_j xpad[n, t + j * dilation] @ w[j], in float64."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (before, after), (0, 0)))
    r = w.shape[0]
    out_len = xp.shape[1] - (r - 1) * dilation
    y = np.zeros((x.shape[0], out_len, w.shape[2]))
    for j in range(r):
        y += xp[:, j * dilation:j * dilation + out_len] @ w[j].astype(np.float64)
    return y if b is None else y + b


@pytest.mark.parametrize("r", range(2, winograd1d.ALPHA))
def test_transforms_give_the_correlation_exactly(rng, r):
    at, g, bt = winograd1d.transforms(r)
    m = winograd1d.ALPHA - r + 1
    assert at.shape == (m, winograd1d.ALPHA) and g.shape == (winograd1d.ALPHA, r)
    x, w = rng.standard_normal(winograd1d.ALPHA), rng.standard_normal(r)
    expected = [x[t:t + r] @ w for t in range(m)]
    np.testing.assert_allclose(at @ ((g @ w) * (bt @ x)), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("r, dilation, before, after, length", [
    (2, 4, 4, 0, 61),   # causal, dilated: residue classes of different lengths
    (3, 1, 1, 1, 40),   # 'same'
    (5, 1, 0, 0, 37),   # 'valid', the last tile short
    (5, 2, 8, 0, 50),
    (7, 1, 3, 3, 23),
    (4, 3, 0, 0, 30),
])
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv1d_matches_reference(rng, monkeypatch, r, dilation, before, after, length, with_bias):
    # Chunks of a few tiles: several chunks per call, the last one short, on every thread.
    monkeypatch.setattr(winograd1d, "CHUNK_BYTES", winograd1d.ALPHA * (6 + 5) * 4 * 7)
    x = rng.standard_normal((3, length, 6)).astype(np.float32)
    w = rng.standard_normal((r, 6, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32) if with_bias else None
    expected = reference(x, w, b, before, after, dilation)
    y = winograd1d.conv1d(x, w, b, before, expected.shape[1], dilation)
    assert y.shape == expected.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_applicable_only_where_it_pays():
    assert winograd1d.applicable((32, 1000, 128), (2, 128, 64), 4, 1000)
    assert winograd1d.applicable((64, 200, 128), (5, 128, 128), 1, 196)
    assert not winograd1d.applicable((64, 200, 8), (5, 8, 128), 1, 196)  # too few channels
    assert not winograd1d.applicable((64, 200, 128), (1, 128, 128), 1, 200)  # pointwise: one product already
    assert not winograd1d.applicable((64, 200, 128), (9, 128, 128), 1, 192)  # longer than ALPHA - 1 taps
    assert not winograd1d.applicable((4, 40, 128), (2, 128, 8), 32, 40)  # dilation leaves tiles mostly empty


@pytest.mark.parametrize("padding, dilation", [("valid", 1), ("same", 2), ("causal", 3)])
@pytest.mark.parametrize("min_channels", [1, 1 << 30])  # the Winograd route, the height-1 2-D route
@pytest.mark.parametrize("channels", [4, 16])  # 2-D route: the small-window direct kernel, im2col (causal by index)
def test_conv_forward_routes_agree_with_reference(rng, monkeypatch, padding, dilation, min_channels, channels):
    monkeypatch.setattr(winograd1d, "MIN_CHANNELS", min_channels)
    x = rng.standard_normal((3, 17, channels)).astype(np.float32)
    w = rng.standard_normal((3, channels, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    before, after = {"valid": (0, 0), "same": (dilation, dilation), "causal": (2 * dilation, 0)}[padding]
    expected = reference(x, w, b, before, after, dilation)
    y = conv_nd.conv_forward(x, w, b, (1,), padding, (dilation,))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("padding, dilation, r", [("valid", 1, 5), ("same", 2, 3), ("causal", 3, 2), ("same", 1, 4)])
def test_input_gradient_route_matches_the_2d_route_and_finite_differences(rng, monkeypatch, padding, dilation, r):
    """conv_backward's dx by Winograd (forced) equals the height-1 2-D route's and, on a few inputs,
    finite differences of sum(conv_forward * dy)."""
    x = rng.standard_normal((2, 19, 4)).astype(np.float32)
    w = rng.standard_normal((r, 4, 5)).astype(np.float32)
    y = conv_nd.conv_forward(x, w, None, (1,), padding, (dilation,))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    grads = {}
    for min_channels in (1, 1 << 30):
        monkeypatch.setattr(winograd1d, "MIN_CHANNELS", min_channels)
        grads[min_channels] = conv_nd.conv_backward(x, dy, w, (1,), padding, (dilation,))
    (dx, dw, db), (dx2d, dw2d, db2d) = grads[1], grads[1 << 30]
    np.testing.assert_allclose(dx, dx2d, rtol=1e-4, atol=1e-4 * np.abs(dx2d).max())
    np.testing.assert_allclose(dw, dw2d, rtol=1e-5, atol=1e-5)
    x64, w64, dy64 = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    before, after = {"valid": (0, 0), "same": (dilation * (r - 1) // 2, dilation * (r - 1) - dilation * (r - 1) // 2),
                     "causal": ((r - 1) * dilation, 0)}[padding]
    for n, t, c in ((0, 0, 0), (1, 9, 3), (1, 18, 2)):
        e = np.zeros_like(x64)
        e[n, t, c] = 1e-3
        numeric = ((reference(x64 + e, w64, None, before, after, dilation) * dy64).sum()
                   - (reference(x64 - e, w64, None, before, after, dilation) * dy64).sum()) / 2e-3
        assert abs(dx[n, t, c] - numeric) <= 1e-4 * max(1.0, abs(numeric))
