"""The fused affine kernel never reads or writes out of bounds, whatever the matrix, size or fill mode.

Numba does not check indices in compiled code, so the kernel is recompiled in a subprocess with
NUMBA_BOUNDSCHECK=1 (and a fresh cache, so nothing unchecked is reused): an out-of-bounds index
there raises IndexError instead of silently reading memory. Matrices include degenerate, huge,
tiny, negative, NaN and infinite entries.
"""
import os
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import numpy as np
    from tlkit.augment import kernels

    rng = np.random.default_rng(0)
    specials = [0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, np.nan, np.inf, -np.inf, 0.5, -3.0, 7.25]
    cases = 0
    for trial in range(400):
        n, h, w, c = 2, int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.choice([1, 3, 4]))
        ho, wo = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        dtype = rng.choice([np.uint8, np.float32, np.float64])
        src = (rng.random((n, h, w, c)) * 255).astype(dtype)
        if trial % 3 == 0:
            src = src[:, ::-1]  # negative strides
        mats = rng.normal(0, 10 ** rng.uniform(-3, 3), (n, 2, 3))
        if trial % 2:
            flat = mats.reshape(-1)
            pick = rng.integers(0, flat.size, int(rng.integers(1, 4)))
            flat[pick] = rng.choice(specials, len(pick))
        out_dtype = np.float32 if trial % 2 else np.float64
        out = np.empty((n, ho, wo, c), out_dtype)
        order = int(rng.integers(0, 2))
        mode = int(rng.integers(0, 4))
        scale = rng.uniform(0.5, 2, n).astype(np.float32)
        offset = rng.uniform(-1, 1, n).astype(np.float32)
        kernels.warp_affine_serial(src, mats, out, order, mode, 0.5, scale, offset)
        kernels.warp_affine(src, mats, out, order, mode, 0.5, scale, offset, 2)
        finite_matrix = np.isfinite(mats).all(axis=(1, 2))
        assert np.isfinite(out[finite_matrix]).all() or (np.abs(mats[finite_matrix]) > 1e15).any()
        cases += 1
    print("checked", cases)
""")


def test_affine_kernel_stays_in_bounds_for_any_matrix(tmp_path):
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba_cache")}
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 400" in result.stdout
