"""Convolution kernels against a slow, obviously-correct numpy reference (float64 loops over taps)."""
import numpy as np
import pytest

from tlkit.engine.kernels import conv


def same_pads(size, k, s, d):
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return out, total // 2, total - total // 2


def geometry(size, k, s, d, padding):
    if padding == "same":
        return same_pads(size, k, s, d)
    return (size - (k - 1) * d - 1) // s + 1, 0, 0


def tap_slices(oh, ow, i, j, s, d):
    """The padded-input pixels tap (i, j) reads for every output pixel."""
    return (slice(None), slice(i * d[0], i * d[0] + (oh - 1) * s[0] + 1, s[0]),
            slice(j * d[1], j * d[1] + (ow - 1) * s[1] + 1, s[1]))


def ref_setup(x_shape, w_shape, s, padding, d):
    oh, pt, pb = geometry(x_shape[1], w_shape[0], s[0], d[0], padding)
    ow, pl, pr = geometry(x_shape[2], w_shape[1], s[1], d[1], padding)
    return oh, ow, ((0, 0), (pt, pb), (pl, pr), (0, 0))


def ref_forward(x, w, b, s, padding, d, relu=False):
    oh, ow, pad = ref_setup(x.shape, w.shape, s, padding, d)
    xp = np.pad(x.astype(np.float64), pad)
    y = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            y += xp[tap_slices(oh, ow, i, j, s, d)] @ w[i, j].astype(np.float64)
    if b is not None:
        y += b
    return np.maximum(y, 0) if relu else y


def ref_backward(x, w, dy, s, padding, d):
    oh, ow, pad = ref_setup(x.shape, w.shape, s, padding, d)
    xp = np.pad(x.astype(np.float64), pad)
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    dy = dy.astype(np.float64)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            sl = tap_slices(oh, ow, i, j, s, d)
            dxp[sl] += dy @ w[i, j].T.astype(np.float64)
            dw[i, j] = np.einsum("nhwc,nhwf->cf", xp[sl], dy)
    (_, _), (pt, pb), (pl, pr), _ = pad
    dx = dxp[:, pt:dxp.shape[1] - pb, pl:dxp.shape[2] - pr]
    return dx, dw, dy.sum((0, 1, 2))


# (x shape, (kh, kw, filters), strides, padding, dilation)
CASES = [
    ((1, 7, 9, 3), (3, 3, 4), (1, 1), "same", (1, 1)),
    ((3, 8, 11, 5), (3, 3, 2), (2, 2), "same", (1, 1)),
    ((3, 8, 11, 5), (3, 3, 2), (2, 2), "valid", (1, 1)),
    ((1, 9, 6, 1), (1, 1, 3), (1, 1), "valid", (1, 1)),
    ((3, 5, 7, 5), (1, 1, 4), (2, 2), "same", (1, 1)),
    ((1, 12, 10, 3), (7, 7, 5), (2, 2), "same", (1, 1)),
    ((1, 12, 10, 3), (7, 7, 2), (1, 1), "valid", (1, 1)),
    ((3, 10, 9, 5), (3, 3, 3), (1, 1), "same", (2, 2)),
    ((1, 11, 13, 3), (2, 2, 3), (1, 1), "same", (1, 1)),
    ((1, 6, 7, 1), (4, 3, 2), (2, 3), "valid", (1, 1)),
    ((3, 13, 8, 5), (5, 5, 3), (1, 1), "valid", (2, 1)),
    ((1, 4, 4, 2), (3, 3, 3), (3, 3), "same", (1, 1)),
]
IDS = [f"{c[0]}-k{c[1]}-s{c[2]}-{c[3]}-d{c[4]}" for c in CASES]


def make(case, rng):
    x_shape, (kh, kw, f), s, padding, d = case
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((kh, kw, x_shape[3], f)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    return x, w, b, s, padding, d


def close(got, want, rtol=1e-5):
    assert got.shape == want.shape
    scale = max(np.abs(want).max(), 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


@pytest.fixture(params=["default", "one_row", "few_images"])
def tile_bytes(request, monkeypatch):
    """Exercise every tiling: one row per tile, and several whole images per tile."""
    size = {"default": conv.TILE_BYTES, "one_row": 1, "few_images": 40_000}[request.param]
    monkeypatch.setattr(conv, "TILE_BYTES", size)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_reference(case, rng, tile_bytes):
    x, w, b, s, padding, d = make(case, rng)
    for bias, relu in ((None, False), (b, True), (b, False)):
        y = conv.conv2d_forward(x, w, bias, s, padding, d, relu=relu)
        assert y.dtype == np.float32
        close(y, ref_forward(x, w, bias, s, padding, d, relu))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_matches_reference(case, rng, tile_bytes):
    x, w, _, s, padding, d = make(case, rng)
    dy = rng.standard_normal(conv.conv2d_forward(x, w, None, s, padding, d).shape).astype(np.float32)
    dx_ref, dw_ref, db_ref = ref_backward(x, w, dy, s, padding, d)
    close(conv.conv2d_backward_input(dy, w, x.shape, s, padding, d), dx_ref)
    dw, db = conv.conv2d_backward_weights(x, dy, w.shape, s, padding, d)
    close(dw, dw_ref)
    close(db, db_ref)
