"""The recurrent layers' per-step products (recurrent_products.StepProduct): y = x @ w and y += x @ w
through gemm_blocks' packed micro-kernel and through BLAS, against a float64 numpy product, on odd
shapes (rows below and past a block, columns past a panel, LSTM(256)'s 256 x 1024 and its transpose),
x and y as rows of wider time-major arrays as the time loops pass them, and the block-shape rule; the
sequence-long products (input projection with its bias, dx) on one thread and split over two."""
import numpy as np
import pytest

from tlkit.engine.kernels import gemm_blocks
from tlkit.engine.kernels.recurrent_products import ALIASED_ROW_BYTES, StepProduct, block_shape, sequence_product
from tlkit.utils import threads

# (rows, K, F): a sample, rows past whole blocks, GRU/LSTM gate widths of odd units, LSTM(256) both ways
SHAPES = [(1, 3, 12), (5, 37, 148), (7, 37, 111), (33, 40, 160), (32, 256, 1024), (29, 1024, 256)]


def _data(rng, rows, k, f):
    x = rng.standard_normal((rows, k)).astype(np.float32)
    w = (rng.standard_normal((k, f)) / np.sqrt(k)).astype(np.float32)
    return x, w


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("rows,k,f", SHAPES)
def test_products_match_float64(rows, k, f, packed, monkeypatch):
    if not packed:
        monkeypatch.setattr(gemm_blocks, "ENABLED", False)
    rng = np.random.default_rng(rows + k + f)
    x, w = _data(rng, rows, k, f)
    product = StepProduct(w, rows)
    assert (product.packed is not None) == (packed and gemm_blocks.worth_it(k, f))
    # x and y as one step's rows of a block of wider time-major sequences (T, B, ...)[t, lo:hi]
    xs = np.zeros((3, rows + 4, k), np.float32)
    xs[1, 2:2 + rows] = x
    ys = np.full((3, rows + 4, f), np.nan, np.float32)
    y = ys[1, 2:2 + rows]
    product(xs[1, 2:2 + rows], y)
    want = x.astype(np.float64) @ w
    scale = np.abs(want).max()
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * scale)
    start = rng.standard_normal((rows, f)).astype(np.float32)
    y[...] = start
    product.add(xs[1, 2:2 + rows], y, np.empty((rows, f), np.float32))
    np.testing.assert_allclose(y, want + start, rtol=1e-5, atol=1e-5 * scale)
    assert np.isnan(ys[:, :2]).all() and np.isnan(ys[:, 2 + rows:]).all()  # nothing past the block's rows
    assert np.isnan(ys[0]).all() and np.isnan(ys[2]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_route_pads_rows_a_multiple_of_4kb(dtype, monkeypatch):
    monkeypatch.setattr(gemm_blocks, "ENABLED", False)
    f = ALIASED_ROW_BYTES // np.dtype(dtype).itemsize
    w = np.random.default_rng(0).standard_normal((8, f)).astype(dtype)
    product = StepProduct(w, 4)
    assert product.packed is None and product.w.strides[0] > f * w.itemsize
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(dtype)
    y = np.empty((4, f), dtype)
    product(x, y)
    np.testing.assert_allclose(y, x @ w, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_float64_weights_stay_on_blas():
    assert StepProduct(np.ones((4, 8)), 3).packed is None


def test_block_shape_computes_the_fewest_padded_elements():
    # LSTM(256) forward, 32-row blocks: 8 x 3 computes 32 x 1056, 6 x 4 would compute 36 x 1024
    assert block_shape(32, 256, 1024, 16) == (8, 3)
    # its backward (F = 256): 6 x 4 and 8 x 3 tie at 9216; the first of SHAPES wins (fewer rows)
    assert block_shape(32, 1024, 256, 16) == (6, 4)
    assert block_shape(6, 100, 64, 16) == (6, 4)
    assert block_shape(5, 37, 37, 8) == (6, 2)


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("rows,k,f,bias,dtype", [(700, 128, 1024, True, np.float32), (45, 37, 148, False, np.float32),
                                                 (301, 1024, 256, False, np.float32), (45, 6, 148, True, np.float64)])
def test_sequence_product_matches_float64(rows, k, f, bias, dtype, packed, threaded, monkeypatch):
    if not packed:
        monkeypatch.setattr(gemm_blocks, "ENABLED", False)
    if threaded:  # the rows cut into chunks over two threads, whatever this machine's size
        monkeypatch.setattr(threads, "num_threads", lambda: 2)
        monkeypatch.setattr(threads, "MIN_SPLIT_FLOPS", 0)
    rng = np.random.default_rng(k + f)
    x, w = (a.astype(dtype) for a in _data(rng, rows, k, f))
    b = rng.standard_normal(f).astype(dtype) if bias else None
    w_t = np.ascontiguousarray(w.T).T  # a transposed view, as dx's kernel.T
    out = np.full((rows, f), np.nan, dtype)
    added = sequence_product(x, w_t, out, b)
    assert added == (bias and packed and dtype == np.float32 and gemm_blocks.worth_it(k, f))
    want = x.astype(np.float64) @ w + (b if added else 0.0)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
