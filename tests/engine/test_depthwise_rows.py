"""The stride-1 3x3 / 5x5 depthwise forward through a ring of zero-padded rows
(kernels/depthwise_rows.py) against a float64 numpy reference and torch: odd sizes, channel counts
that are not a multiple of a vector, 'same' / 'valid' and ZeroPadding2D borders of 1-3 pixels,
row dilation, batch 1 (bands of rows) and odd batches (whole images), bias and clip."""
import numpy as np
import pytest

from tlkit.engine.kernels import depthwise, depthwise_rows

from test_depthwise_layers import reference_depthwise


@pytest.fixture
def row_calls(monkeypatch):
    """Records the band count of each call that reaches the ring kernel, so each test proves it ran."""
    calls = []
    kernel = depthwise_rows._forward_rows

    def spy(*args):
        calls.append(args[8])
        return kernel(*args)
    monkeypatch.setattr(depthwise_rows, "_forward_rows", spy)
    return calls


def reference64(x, kernel, padding, dilation=(1, 1), bias=None, clip=(-np.inf, np.inf), zero_pads=None):
    """The float64 result: zero_pads as an explicit ZeroPadding2D, then the numpy reference."""
    x64, k64 = x.astype(np.float64), kernel.astype(np.float64)
    if zero_pads is not None:
        x64 = np.pad(x64, ((0, 0),) + tuple(zero_pads) + ((0, 0),))
    y = reference_depthwise(x64, k64, (1, 1), padding, dilation)
    return np.clip(y + (0.0 if bias is None else bias.astype(np.float64)), *clip)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("padding,dilation", [("same", (1, 1)), ("valid", (1, 1)), ("same", (2, 1))])
@pytest.mark.parametrize("shape", [(1, 9, 13, 68), (3, 7, 6, 101), (5, 11, 17, 144)])
def test_rows_match_float64_reference(rng, row_calls, k, padding, dilation, shape):
    """Batch 1 (the rows split into bands, each re-reading the rows above it), odd batches of whole
    images, widths that are and are not a multiple of the 4-pixel block, 68 / 101 / 144 channels."""
    if padding == "valid" and shape[2] - (k - 1) < depthwise_rows.PIXELS:
        shape = shape[:2] + (shape[2] + k,) + shape[3:]
    x = (2 * rng.standard_normal(shape)).astype(np.float32)
    kernel = rng.standard_normal((k, k, shape[-1], 1)).astype(np.float32)
    bias = rng.standard_normal(shape[-1]).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), padding, dilation, bias=bias, clip=(-4.0, 5.0))
    assert len(row_calls) == 1
    expected = reference64(x, kernel, padding, dilation, bias, (-4.0, 5.0))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("pads", [((1, 1), (1, 1)), ((2, 3), (3, 1)), ((0, 2), (2, 0)), ((3, 3), (3, 3))])
def test_zero_padding_borders_read_in_place(rng, row_calls, k, pads):
    """A ZeroPadding2D of 1-3 pixels before a 'valid' conv, read as zeros: asymmetric pads, pads
    wider than the kernel's reach (rows and columns of outputs that see only zeros: the bias)."""
    x = rng.standard_normal((2, 8, 10, 67)).astype(np.float32)
    kernel = rng.standard_normal((k, k, 67, 1)).astype(np.float32)
    bias = rng.standard_normal(67).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), "valid", bias=bias, zero_pads=pads)
    assert len(row_calls) == 1
    np.testing.assert_allclose(y, reference64(x, kernel, "valid", bias=bias, zero_pads=pads), rtol=1e-5, atol=1e-5)


def test_band_counts_follow_the_batch(rng, row_calls, monkeypatch):
    """A batch with two or more images per thread runs whole images; batch 1 splits its rows into
    bands (at most one per row) and still matches."""
    monkeypatch.setattr(depthwise_rows.numba, "get_num_threads", lambda: 2)
    kernel = rng.standard_normal((3, 3, 64, 1)).astype(np.float32)
    for shape in [(4, 6, 6, 64), (1, 6, 6, 64), (1, 2, 6, 64)]:
        x = rng.standard_normal(shape).astype(np.float32)
        y = depthwise.depthwise_forward(x, kernel, (1, 1), "same")
        np.testing.assert_allclose(y, reference64(x, kernel, "same"), rtol=1e-5, atol=1e-5)
    assert row_calls == [1, 4, 2]


def test_narrow_outputs_and_other_kernels_skip_the_rows(rng, row_calls):
    """Fewer than 4 output columns or ROWS_MIN_CHANNELS channels, non-square and 7x7 kernels and
    column stride 2 keep the tiled kernel."""
    narrow = rng.standard_normal((2, 9, 3, 64)).astype(np.float32)
    wide = rng.standard_normal((2, 9, 9, 64)).astype(np.float32)
    for kernel_size, strides, x in [((3, 3), (1, 1), narrow), ((3, 5), (1, 1), wide), ((7, 7), (1, 1), wide),
                                    ((3, 3), (2, 2), wide), ((3, 3), (1, 1), wide[..., :32])]:
        kernel = rng.standard_normal(kernel_size + (x.shape[-1], 1)).astype(np.float32)
        y = depthwise.depthwise_forward(x, kernel, strides, "same")
        np.testing.assert_allclose(y, reference_depthwise(x, kernel, strides, "same"), rtol=1e-5, atol=1e-5)
    assert row_calls == []


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("shape", [(3, 15, 15, 144), (4, 14, 14, 152)])
def test_rows_match_torch(rng, block_widths, k, shape):
    """MobileNet-like widths against torch: odd 15 x 15 images (4-pixel blocks) and 14 x 14 ones (two
    7-pixel blocks); torch's symmetric padding is 'same' here."""
    torch = pytest.importorskip("torch")
    ch = shape[-1]
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal((k, k, ch, 1)).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), "same")
    tx = torch.tensor(x.transpose(0, 3, 1, 2))
    tw = torch.tensor(kernel[:, :, :, 0].transpose(2, 0, 1)[:, None])
    ty = torch.nn.functional.conv2d(tx, tw, padding=k // 2, groups=ch).numpy().transpose(0, 2, 3, 1)
    assert block_widths == [depthwise_rows.WIDE_PIXELS if shape[2] == 14 else depthwise_rows.PIXELS]
    np.testing.assert_allclose(y, ty, rtol=1e-4, atol=1e-5)


@pytest.fixture
def block_widths(monkeypatch):
    """Records which ring kernel (4- or 7-pixel blocks) each call ran."""
    calls = []
    for name, width in [("_rows_narrow", depthwise_rows.PIXELS), ("_rows_wide", depthwise_rows.WIDE_PIXELS)]:
        def spy(*args, kernel=getattr(depthwise_rows, name), width=width):
            calls.append(width)
            return kernel(*args)
        monkeypatch.setattr(depthwise_rows, name, spy)
    return calls


def test_wide_blocks_where_they_compute_no_more_pixels():
    """7-pixel blocks on rows of 7, 13, 14, 28, 112 pixels; 4-pixel ones where 7 would compute
    more (the last block of a row overlaps the one before it) or the row is shorter than 7."""
    assert [w for w in (4, 6, 7, 8, 12, 13, 14, 16, 20, 28, 56, 112) if depthwise_rows.wide_blocks(w)] == [
        7, 13, 14, 28, 56, 112]


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("padding,dilation", [("same", (1, 1)), ("valid", (1, 1)), ("same", (2, 1))])
@pytest.mark.parametrize("shape", [(1, 8, 7, 72), (3, 9, 14, 91), (2, 5, 13, 64), (2, 6, 28, 100)])
def test_wide_blocks_match_float64_reference(rng, block_widths, k, padding, dilation, shape):
    """Rows of one 7-pixel block, of two, of two overlapping (13), of four; batch 1 (bands of rows),
    channels not a multiple of a vector; the row width each padding leaves picks the block width."""
    if padding == "valid":
        shape = shape[:2] + (shape[2] + k - 1,) + shape[3:]
    x = (2 * rng.standard_normal(shape)).astype(np.float32)
    kernel = rng.standard_normal((k, k, shape[-1], 1)).astype(np.float32)
    bias = rng.standard_normal(shape[-1]).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), padding, dilation, bias=bias, clip=(-3.0, 4.0))
    assert block_widths == [depthwise_rows.WIDE_PIXELS]
    np.testing.assert_allclose(y, reference64(x, kernel, padding, dilation, bias, (-3.0, 4.0)), rtol=1e-5,
                               atol=1e-5)
