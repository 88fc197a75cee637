"""The gate kernels' sigmoid and tanh (kernels/gate_math.py): float32 uses a vectorizable polynomial
form, checked against numpy in float64; float64 stays exact."""
import numpy as np
import pytest
from numba import njit

from tlkit.engine.kernels import gate_math
from tlkit.engine.kernels.recurrent_cells import _FAST, ACTIVATION_CODES, _act_range


@njit(fastmath=_FAST)
def _act_range_as_in_kernels(code, z, lo, hi):
    """_act_range inlined under the gate kernels' fastmath flags (FMA contraction changes roundings)."""
    _act_range(code, z, lo, hi)


def _reference(name, x):
    x = x.astype(np.float64)
    with np.errstate(over="ignore"):
        return np.tanh(x) if name == "tanh" else 1.0 / (1.0 + np.exp(-x))


def _points():
    x = np.concatenate([np.linspace(-100, 100, 200_001), np.linspace(-1e-3, 1e-3, 2001),
                        [0.0, 1e-30, -1e-30, 1e-6, -1e-6, 3.0e38, -3.0e38, np.inf, -np.inf]])
    return x.astype(np.float32)


@pytest.mark.parametrize("act_range", [_act_range, _act_range_as_in_kernels])
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_float32_form_matches_numpy_to_float32_precision(name, act_range):
    x = _points()
    got = x.copy()
    act_range(ACTIVATION_CODES[name], got, 0, got.size)
    ref = _reference(name, x)
    err = np.abs(got.astype(np.float64) - ref)
    assert err.max() < 1.2e-7, (name, x[err.argmax()], got[err.argmax()], ref[err.argmax()])
    # Relative error where float32 can show it (tanh(tiny) = tiny; sigmoid(-60) = 8.8e-27).
    big = np.abs(ref) > 1e-30
    assert (err[big] / np.abs(ref[big])).max() < 2e-7, name
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_float64_stays_exact(name):
    x = np.linspace(-40, 40, 10_001)
    got = x.copy()
    _act_range(ACTIVATION_CODES[name], got, 0, got.size)
    np.testing.assert_allclose(got, _reference(name, x), rtol=1e-14, atol=1e-300)


def test_range_touches_only_its_slice():
    z = np.full(10, 3.0, np.float32)
    _act_range(ACTIVATION_CODES["tanh"], z, 2, 5)
    np.testing.assert_allclose(z[2:5], np.tanh(3.0), rtol=1e-6)
    assert np.all(z[:2] == 3.0) and np.all(z[5:] == 3.0)


def test_plain_python_forms_are_exact():
    assert gate_math.sigmoid(-800.0) == 0.0 and gate_math.sigmoid(800.0) == 1.0
    assert abs(gate_math.tanh(0.5) - np.tanh(0.5)) < 1e-15


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_float32_form_keeps_nan(name):
    """A NaN gate stays NaN (training's NaN guards see it), in the vector loop and its remainder."""
    z = np.array([np.nan, 1.0, -np.nan] * 7, np.float32)
    _act_range_as_in_kernels(ACTIVATION_CODES[name], z, 0, z.size)
    assert np.isnan(z[0::3]).all() and np.isnan(z[2::3]).all() and np.isfinite(z[1::3]).all()
