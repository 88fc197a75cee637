"""conv2d_maxpool_forward's band route (conv_pool_bands.py) against a numpy conv + max pool."""
import numpy as np
import pytest

from tlkit.engine.kernels import conv, conv_pool_bands
from tlkit.utils import threads


def numpy_conv_pool(x, w, b, stride, conv_pad, pool, pool_stride, pool_pad, relu):
    kh, kw, _, f = w.shape
    n, h, wd, _ = x.shape
    if conv_pad == "same":
        oh, ow = -(-h // stride), -(-wd // stride)
        ph_, pw_ = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
        x = np.pad(x, ((0, 0), (ph_ // 2, ph_ - ph_ // 2), (pw_ // 2, pw_ - pw_ // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    y = np.zeros((n, oh, ow, f), np.float64) + b
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nhwc,cf->nhwf", x[:, i:i + stride * oh:stride, j:j + stride * ow:stride], w[i, j])
    if relu:
        y = np.maximum(y, 0)
    if pool_pad == "same":
        p_rows, p_cols = -(-oh // pool_stride), -(-ow // pool_stride)
        eh, ew = max((p_rows - 1) * pool_stride + pool - oh, 0), max((p_cols - 1) * pool_stride + pool - ow, 0)
        y = np.pad(y, ((0, 0), (eh // 2, eh - eh // 2), (ew // 2, ew - ew // 2), (0, 0)), constant_values=-np.inf)
    else:
        p_rows, p_cols = (oh - pool) // pool_stride + 1, (ow - pool) // pool_stride + 1
    out = np.full((n, p_rows, p_cols, f), -np.inf)
    for i in range(pool):
        for j in range(pool):
            out = np.maximum(out, y[:, i:i + pool_stride * p_rows:pool_stride, j:j + pool_stride * p_cols:pool_stride])
    return out


@pytest.mark.parametrize("band_bytes", [1, 1 << 30], ids=["one_pooled_row_a_band", "whole_image_bands"])
@pytest.mark.parametrize("conv_pad, pool_pad, relu", [("valid", "valid", True), ("same", "same", False)])
@pytest.mark.parametrize("products", [True, 8, False], ids=["gemm_blocks", "gemm_blocks_8_lanes", "blas"])
@pytest.mark.parametrize("channels, k", [(3, 3), (4, 3), (2, 2)])
def test_band_route_matches_numpy(monkeypatch, band_bytes, conv_pad, pool_pad, relu, products, channels, k):
    """RGB 3x3 windows (their own gather) and others (im2col_rows), through gemm_blocks or BLAS, into a
    NaN-poisoned output."""
    rng = np.random.default_rng(0)
    monkeypatch.setattr(conv_pool_bands, "BAND_BYTES", band_bytes)
    monkeypatch.setattr(conv_pool_bands, "PRODUCTS", bool(products))
    if products == 8:  # AVX2's vectors (they run on AVX-512 CPUs too)
        monkeypatch.setattr(conv_pool_bands.gemm_blocks, "lanes", lambda: 8)
    monkeypatch.setattr(threads, "num_threads", lambda: 3)
    x = rng.standard_normal((3, 23, 21, channels)).astype(np.float32)
    w = rng.standard_normal((k, k, channels, 40)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    assert conv_pool_bands.preferred(40, (1, 1))
    want = numpy_conv_pool(x, w, b, 2, conv_pad, 3, 2, pool_pad, relu)
    out = np.full(want.shape, np.nan, np.float32)
    got = conv.conv2d_maxpool_forward(x, w, b, strides=2, padding=conv_pad, relu=relu, pool_size=3, pool_strides=2,
                                      pool_padding=pool_pad, out=out)
    assert got is out
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_band_route_and_direct_kernel_agree(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 30, 30, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 64)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    bands = conv.conv2d_maxpool_forward(x, w, b, strides=2, relu=True, pool_size=3, pool_strides=2)
    monkeypatch.setattr(conv_pool_bands, "MIN_FILTERS", 10**9)  # the direct fused kernel
    direct = conv.conv2d_maxpool_forward(x, w, b, strides=2, relu=True, pool_size=3, pool_strides=2)
    np.testing.assert_allclose(bands, direct, rtol=1e-4, atol=1e-4)
