"""The register-blocked 1x1 product (gemm_blocks): every block shape of both lane widths against a float64
numpy product on odd shapes (rows not a multiple of MR, columns not a multiple of the lanes, K = 1..96),
every epilogue (none, ReLU, ReLU6, residual), outputs that are column slices of wider arrays, the packing
rules, and the conv routes that call it (1x1 convs through conv2d_forward and pointwise_conv, on one
thread and as row chunks on several), with poisoned outputs."""
import gc

import numpy as np
import pytest

from tlkit.engine.kernels import conv, conv_chunks, epilogue, gemm_blocks
from tlkit.utils import threads

# (lanes, (MR, NV)): every block shape of both widths; the 8-lane ones also run where AVX-512 is there
BLOCKS = [(w, shape) for w, shapes in gemm_blocks.SHAPES.items() for shape in shapes]
# (rows, K, F): rows past whole blocks, K = 1, 3, 16, 17, 96, F below / past a vector and a panel
SHAPES = [(1, 1, 1), (5, 3, 7), (37, 16, 20), (29, 17, 33), (13, 96, 70), (50, 16, 16)]
# (bias, low, high, residual): no epilogue, ReLU, ReLU6, residual + ReLU6, residual alone
EPILOGUES = [(False, -np.inf, np.inf, False), (True, 0.0, np.inf, False), (True, 0.0, 6.0, False),
             (True, 0.0, 6.0, True), (True, -np.inf, np.inf, True)]


def reference(x, w, b, r, low, high):
    y = x.astype(np.float64) @ w.astype(np.float64)
    if b is not None:
        y += b
    if r is not None:
        y += r
    return np.clip(y, low, high)


def data(rng, rows, k, f, scale=3.0):
    x = (rng.standard_normal((rows, k)) * scale).astype(np.float32)
    w = (rng.standard_normal((k, f)) / np.sqrt(k)).astype(np.float32)
    return x, w, rng.standard_normal(f).astype(np.float32), rng.standard_normal((rows, f)).astype(np.float32)


def check(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("lanes, shape", BLOCKS)
def test_every_block_shape_and_epilogue(lanes, shape):
    rng = np.random.default_rng(lanes * 100 + shape[0])
    for rows, k, f in SHAPES:
        x, w, b, r = data(rng, rows, k, f)
        for has_bias, low, high, has_res in EPILOGUES:
            packed = gemm_blocks.pack(w, b if has_bias else None, lanes, shape)
            y = np.full((rows, f), np.nan, np.float32)  # poisoned: every element must be written
            gemm_blocks.product_epilogue(x, packed, y, r if has_res else None, low, high)
            check(y, reference(x, w, b if has_bias else None, r if has_res else None, low, high))


@pytest.mark.parametrize("lanes", sorted(gemm_blocks.SHAPES))
def test_column_slice_of_a_wider_output_and_strided_rows(lanes):
    """y and the residual as column slices of wider arrays (a concatenation's channels), x a strided
    view: only the slice is written."""
    rng = np.random.default_rng(7)
    rows, k, f = 45, 24, 37
    x_wide, w, b, _ = data(rng, rows, 2 * k, f)
    x = x_wide[:, 5:5 + k]
    w = w[:k]
    wide = np.full((rows, 3 * f), np.nan, np.float32)
    r_wide = rng.standard_normal((rows, 2 * f + 3)).astype(np.float32)
    gemm_blocks.product_epilogue(x, gemm_blocks.pack(w, b, lanes), wide[:, f:2 * f], r_wide[:, 3:3 + f], 0.0, 6.0)
    check(wide[:, f:2 * f], reference(x, w, b, r_wide[:, 3:3 + f], 0.0, 6.0))
    assert np.isnan(wide[:, :f]).all() and np.isnan(wide[:, 2 * f:]).all()


def test_bad_shapes_are_refused_in_one_line():
    packed = gemm_blocks.pack(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected x \(M, 4\)"):
        gemm_blocks.product_epilogue(np.ones((5, 3), np.float32), packed, np.empty((5, 3), np.float32))
    with pytest.raises(ValueError, match="gemm_blocks"):
        gemm_blocks.product_epilogue(np.ones((5, 4), np.float32), packed, np.empty((5, 3), np.float32),
                                     np.zeros((4, 3), np.float32))


def test_arrays_the_kernel_cannot_read_are_refused():
    """float64, or columns not adjacent in memory: the micro-kernel reads float32 rows as vectors."""
    packed = gemm_blocks.pack(np.ones((4, 3), np.float32))
    x, y = np.ones((5, 4), np.float32), np.empty((5, 3), np.float32)
    with pytest.raises(ValueError, match="x must be a 2-D float32 array"):
        gemm_blocks.product_epilogue(x.astype(np.float64), packed, y)
    with pytest.raises(ValueError, match="x must be"):
        gemm_blocks.product_epilogue(np.ones((5, 8), np.float32)[:, ::2], packed, y)
    with pytest.raises(ValueError, match="y must be"):
        gemm_blocks.product_epilogue(x, packed, np.empty((3, 5), np.float32).T)
    with pytest.raises(ValueError, match="residual must be"):
        gemm_blocks.product_epilogue(x, packed, y, np.ones((5, 3)))


def test_block_shape_pads_the_columns_least():
    for lanes in gemm_blocks.SHAPES:
        for k, f in [(64, 16), (16, 64), (256, 48), (576, 96), (960, 160), (32, 192), (1024, 256), (8, 5), (9, 40)]:
            mr, nv = gemm_blocks.block_shape(k, f, lanes)
            padded = -(-f // (nv * lanes)) * nv * lanes
            assert (mr, nv) in gemm_blocks.SHAPES[lanes]
            assert padded == min(-(-f // (v * lanes)) * v * lanes for _, v in gemm_blocks.SHAPES[lanes])
    # among the shapes padding as little, the fewest rows
    assert gemm_blocks.block_shape(960, 160, 16) == (12, 2)
    assert gemm_blocks.block_shape(2048, 512, 16) == (6, 4)
    assert gemm_blocks.block_shape(64, 24, 8) == (6, 2)


def test_packing_is_kept_while_the_arrays_live():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((2, 1, 8, 16)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    first = gemm_blocks.pack_kept(w.reshape(16, 16), b)
    assert gemm_blocks.pack_kept(w.reshape(16, 16), b) is first  # another view of the same arrays
    other = w.copy()
    assert gemm_blocks.pack_kept(other.reshape(16, 16), b) is not first
    gc.collect()  # earlier tests' garbage cycles go now, so the count below changes by this test alone
    count = len(gemm_blocks._kept)
    del other
    gc.collect()
    assert len(gemm_blocks._kept) == count - 1


@pytest.fixture(params=["one thread", "row chunks"])
def route(request, monkeypatch):
    """The packed route on the calling thread, or as row chunks on 3 threads whatever the machine has."""
    if request.param == "row chunks":
        monkeypatch.setattr(threads, "num_threads", lambda: 3)
        monkeypatch.setattr(conv_chunks, "CHUNKED", True)
    else:
        monkeypatch.setattr(conv_chunks, "CHUNKED", False)
    return request.param


@pytest.mark.parametrize("relu", [False, True])
def test_1x1_conv2d_forward_into_a_concatenation(route, relu):
    """conv2d_forward of a 1x1 conv into channels [lo, lo + F) of a wider buffer (SqueezeNet's
    expand1x1), with bias and ReLU fused."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 9, 7, 17)).astype(np.float32)
    w = (rng.standard_normal((1, 1, 17, 21)) / 4).astype(np.float32)
    b = rng.standard_normal(21).astype(np.float32)
    assert gemm_blocks.worth_it(17, 21)
    buf = np.full((3, 9, 7, 50), np.nan, np.float32)
    got = conv.conv2d_forward(x, w, b, relu=relu, out=buf[..., 8:29])
    want = reference(x.reshape(-1, 17), w[0, 0], b, None, 0.0 if relu else -np.inf, np.inf)
    check(got.reshape(-1, 21), want)
    check(buf[..., 8:29].reshape(-1, 21), want)
    assert np.isnan(buf[..., :8]).all() and np.isnan(buf[..., 29:]).all()


def test_pointwise_conv_with_residual_and_clip(route):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 11, 13, 40)).astype(np.float32)
    w = (rng.standard_normal((40, 24)) / 6).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    res = rng.standard_normal((2, 11, 13, 24)).astype(np.float32)
    out = np.full((2, 11, 13, 24), np.nan, np.float32)
    epilogue.pointwise_conv(x, w, b, res, 0.0, 6.0, out)
    check(out.reshape(-1, 24), reference(x.reshape(-1, 40), w, b, res.reshape(-1, 24), 0.0, 6.0))
    check(epilogue.pointwise_conv(x, w).reshape(-1, 24), reference(x.reshape(-1, 40), w, None, None, -np.inf, np.inf))


@pytest.mark.parametrize("parts", [2, 3])
def test_few_rows_split_by_panels(monkeypatch, parts):
    """Few rows (batch 1, deep layers): the weight panels shared by 2 or 3 threads, each block of
    columns with its bias, residual and clip; columns past a block untouched by it."""
    monkeypatch.setattr(threads, "num_threads", lambda: parts)
    monkeypatch.setattr(conv_chunks, "COLUMNS", True)
    rng = np.random.default_rng(13)
    x, w, b, r = data(rng, 49, 40, 200)
    packed = gemm_blocks.pack(w, b)
    assert packed.panels.shape[0] >= parts
    out = np.full((49, 200), np.nan, np.float32)
    conv_chunks.packed_product(x, packed, out, r, 0.0, 6.0)
    check(out, reference(x, w, b, r, 0.0, 6.0))
    res = rng.standard_normal((1, 7, 7, 200)).astype(np.float32)
    got = epilogue.pointwise_conv(x.reshape(1, 7, 7, 40), w, b, res, 0.0, None)
    check(got.reshape(-1, 200), reference(x, w, b, res.reshape(-1, 200), 0.0, np.inf))


def test_deep_weights_over_few_rows_run_panel_by_panel():
    """Weights over PANELS_FIRST_BYTES, fewer rows than columns (a batch-1 conv5 product): the driver makes
    one pass over all rows per panel; rows past whole blocks, the last panel masked, with the residual."""
    rng = np.random.default_rng(11)
    rows, k, f = 37, 3600, 200  # a row pass of either CPU width holds fewer than 37 rows of K = 3600
    assert 4 * k * f > gemm_blocks.PANELS_FIRST_BYTES > 0 and max(gemm_blocks.ROWS_BYTES.values()) // (4 * k) < rows < f
    x, w, b, r = data(rng, rows, k, f)
    y = np.full((rows, f), np.nan, np.float32)
    gemm_blocks.product_epilogue(x, gemm_blocks.pack(w, b), y, r, 0.0, np.inf)
    check(y, reference(x, w, b, r, 0.0, np.inf))


@pytest.mark.parametrize("next_panel", [True, False])
@pytest.mark.parametrize("m,k,f", [(49, 40, 200), (1, 7, 70), (13, 33, 129), (300, 24, 65)])
def test_next_panel_prefetch_keeps_every_product(monkeypatch, next_panel, m, k, f):
    """With and without the next panel's prefetch (few rows and many, one panel and several, a masked last
    panel): the product, bias, residual and clip against float64."""
    monkeypatch.setattr(gemm_blocks, "NEXT_PANEL", next_panel)
    rng = np.random.default_rng(m + k + f)
    x, w = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, f)).astype(np.float32)
    bias, res = rng.standard_normal(f).astype(np.float32), rng.standard_normal((m, f)).astype(np.float32)
    y = np.full((m, f), np.nan, np.float32)
    gemm_blocks.product_epilogue(x, gemm_blocks.pack(w, bias), y, res, np.float32(-1), np.float32(2))
    expected = np.clip(x.astype(np.float64) @ w + bias + res, -1, 2)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
