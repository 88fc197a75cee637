"""bias_grad (the bias gradient of convs: dy's column sums through BLAS) against float64 numpy sums."""
import numpy as np
import pytest

from tlkit.engine.kernels import bias_grad as bias_grad_module
from tlkit.engine.kernels.bias_grad import bias_grad


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (5, 16), (28800, 16), (1000, 513), (3, 2000)])
def test_column_sums_match_float64(shape, rng):
    a = (rng.standard_normal(shape) + 0.5).astype(np.float32)  # an offset: sums that grow with the rows
    got = bias_grad(a)
    assert got.dtype == np.float32 and got.shape == (shape[1],)
    want = a.astype(np.float64).sum(0)
    # float32 rounding grows with the rows summed; a wrong row or column is off by ~1 per entry.
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(a).sum(0).max()))


def test_strided_and_float64_inputs(rng):
    a = rng.standard_normal((40, 12))
    np.testing.assert_allclose(bias_grad(a[:, ::2]), a[:, ::2].sum(0), rtol=0, atol=1e-4)
    np.testing.assert_allclose(bias_grad(a[::3]), a[::3].sum(0), rtol=0, atol=1e-4)


def test_the_shared_vector_of_ones_grows_and_stays_ones(rng):
    """A long call after short ones, then a short one again: the cached ones are never partly stale."""
    for m in (3, 4000, 2, 9001, 17):
        a = rng.standard_normal((m, 5)).astype(np.float32)
        np.testing.assert_allclose(bias_grad(a), a.astype(np.float64).sum(0), rtol=0, atol=1e-5 * m ** 0.5 + 1e-6)
    assert np.all(bias_grad_module._ones["vector"] == 1.0)


def test_float64_input_keeps_float64():
    """Gradient checks run in float64: the sums stay float64 (exact to numpy's)."""
    dy = np.random.default_rng(3).standard_normal((101, 7))
    db = bias_grad(dy)
    assert db.dtype == np.float64
    np.testing.assert_allclose(db, dy.sum(0), rtol=1e-12)
