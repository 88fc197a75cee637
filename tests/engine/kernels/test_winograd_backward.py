"""The Winograd weight gradient's scratch (v, dM, dU and the chunk partial) comes from the workspace
pool: a reused buffer holding the previous call's numbers (here: NaN) must never leak into a result."""
import numpy as np
import pytest

from tlkit.engine.kernels import winograd_backward
from tlkit.utils import workspace


def weight_gradient_f64(x, dy):
    """dw[i, j] = sum over pixels of x_padded[tap (i, j)]^T dy: 'same' padding, float64."""
    _, h, w, _ = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    dy = dy.astype(np.float64)
    return np.stack([np.stack([np.einsum("nhwc,nhwf->cf", xp[:, i:i + h, j:j + w], dy) for j in range(3)])
                     for i in range(3)])


@pytest.mark.parametrize("chunked", [False, True])
def test_reused_scratch_never_leaks_into_the_weight_gradient(rng, monkeypatch, chunked):
    monkeypatch.setattr(workspace, "MIN_BYTES", 0)  # pool even these small buffers
    workspace.clear()
    if chunked:  # several chunks: the partial product buffer is used and summed into dU
        monkeypatch.setattr(winograd_backward, "CHUNK_BYTES", 36 * 3 * 4 * 40 * 4)
        monkeypatch.setattr(winograd_backward, "MIN_TILES", 1)
    shape = (3, 10, 9, 24)
    for call in range(3):
        x = rng.standard_normal(shape).astype(np.float32)
        dy = rng.standard_normal(shape[:3] + (16,)).astype(np.float32)
        want = weight_gradient_f64(x, dy)
        got = winograd_backward.conv3x3_backward_weights(x, dy, 1, 1)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
        pooled = [a for arrays in workspace._free.values() for a in arrays]
        assert len(pooled) >= (4 if chunked else 3)  # v, dM, dU (and the partial) went back to the pool
        for a in pooled:
            a.fill(np.nan)  # the next call gets garbage, as a reused buffer may hold
    workspace.clear()


def input_gradient_f64(dy, w):
    """dx of a 'same' 3x3 conv: each tap's dy @ w[i, j]^T added where that tap read x, float64."""
    n, h, wd, _ = dy.shape
    dxp = np.zeros((n, h + 2, wd + 2, w.shape[2]))
    for i in range(3):
        for j in range(3):
            dxp[:, i:i + h, j:j + wd] += dy.astype(np.float64) @ w[i, j].astype(np.float64).T
    return dxp[:, 1:-1, 1:-1]


def test_reused_scratch_never_leaks_into_the_input_gradient(rng, monkeypatch):
    monkeypatch.setattr(workspace, "MIN_BYTES", 0)
    workspace.clear()
    for call in range(3):
        dy = rng.standard_normal((2, 9, 10, 16)).astype(np.float32)
        w = rng.standard_normal((3, 3, 24, 16)).astype(np.float32)  # C != F: a transposed filter would not fit
        want = input_gradient_f64(dy, w)
        got = winograd_backward.conv3x3_backward_input(dy, w, 1, 1, (9, 10))
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
        pooled = [a for arrays in workspace._free.values() for a in arrays]
        assert len(pooled) >= 2  # the reversed kernel and its transform went back to the pool
        for a in pooled:
            a.fill(np.nan)
    workspace.clear()
