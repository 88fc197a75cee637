"""tlkit.utils.jit.njit: tlkit's kernels compile with LLVM's SLP vectorizer, nobody else's code does."""
import numba
import numpy as np
import pytest

from tlkit.utils import jit


def four_products(a, b, out):  # straight-line code: only the SLP vectorizer makes it one vector product
    x0, x1, x2, x3 = a[0] * b[0], a[1] * b[1], a[2] * b[2], a[3] * b[3]  # loads before stores: out may alias a
    out[0], out[1], out[2], out[3] = x0, x1, x2, x3


def _vector_multiplies(dispatcher):
    a = np.arange(1, 5, dtype=np.float32)
    out = np.zeros(4, np.float32)
    dispatcher(a, a, out)
    np.testing.assert_array_equal(out, a * a)
    (ir,) = dispatcher.inspect_llvm().values()
    return "fmul <4 x float>" in ir


@pytest.fixture
def no_user_setting(monkeypatch):
    monkeypatch.delenv(jit.SLP_ENV, raising=False)
    numba.core.config.reload_config()


def test_tlkit_kernels_get_slp_and_the_process_default_is_kept(no_user_setting):
    default = numba.config.SLP_VECTORIZE
    assert _vector_multiplies(jit.njit(four_products))
    assert _vector_multiplies(jit.njit(nogil=True)(four_products))  # the decorator-with-options form
    assert numba.config.SLP_VECTORIZE == default
    assert not _vector_multiplies(numba.njit(four_products))  # a user's function: numba's default (off)


def test_a_kernel_called_from_a_kernel_compiles_with_slp(no_user_setting):
    inner = jit.njit(four_products)

    @jit.njit
    def outer(a, b, out):
        inner(a, b, out)

    a = np.arange(1, 5, dtype=np.float32)
    out = np.zeros(4, np.float32)
    outer(a, a, out)
    np.testing.assert_array_equal(out, a * a)
    assert "fmul <4 x float>" in "".join(outer.inspect_llvm().values())


def test_the_users_setting_wins(monkeypatch):
    monkeypatch.setenv(jit.SLP_ENV, "0")
    assert not _vector_multiplies(jit.njit(four_products))
