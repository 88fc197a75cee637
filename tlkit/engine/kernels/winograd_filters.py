"""The filter side of Winograd F(4x4, 3x3) (winograd.py): u = G w G^T for every (in, out) channel
pair of a (3, 3, C, F) kernel, whole or one block of output channels at a time, and its adjoint
(the weight gradient's last step). Also the rule for which transformed filters are kept.
"""
import numpy as np
from numba import njit, prange

# Filter transform for points (0, 1, -1, 2, -2, inf); the matching input (B^T) and output (A^T)
# transforms are written out term by term in the numba kernels below.
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]])
G32 = G.astype(np.float32)
F_QUARTER, F_MINUS_SIXTH, F_24TH, F_12TH, F_SIXTH = (np.float32(v) for v in (1 / 4, -1 / 6, 1 / 24, 1 / 12, 1 / 6))
# A transformed filter (36 x C x F floats, 4x the kernel) larger than this is not kept between calls
# (cached_filter_wanted): each chunk transforms it a group of rows of G at a time (6 of the 36 planes
# per row) into one reused scratch of at most this size just before that group's products, which
# keep their full width. VGG16's 256- and 512-channel convs would otherwise hold 220 MB; the groups
# cost about one filter transform per chunk (deep layers: 1-2 chunks), small beside the products.
# Smaller filters (<= 128 channels, many chunks) stay cached.
FILTER_BLOCK_BYTES = 8 << 20


def transform_filter(w):
    """(36, C, F) float32: G g G^T for every (in, out) channel pair of a (3, 3, C, F) kernel."""
    w = np.asarray(w)
    if w.ndim != 4 or w.shape[:2] != (3, 3):
        raise ValueError(f"winograd_transform_filter: expected a (3, 3, in_channels, filters) kernel, got {w.shape}.")
    u = np.empty((36,) + w.shape[2:], np.float32)
    filter_transform(np.ascontiguousarray(w, dtype=np.float32), 0, u)
    return u


def cached_filter_wanted(channels, filters):
    """Whether a frozen conv keeps its transformed filter between calls (small ones: see FILTER_BLOCK_BYTES)."""
    return 36 * channels * filters * 4 <= FILTER_BLOCK_BYTES


@njit(inline="always")
def g_row_values(w, g0, g1, g2, c, f):
    """(G w[:, :, c, f] G^T)[i, 0:6] for the row (g0, g1, g2) = G[i] of G: G along the kernel's rows, then
    G along its columns, in registers (the one place of the filter transform's formulas)."""
    a = g0 * w[0, 0, c, f] + g1 * w[1, 0, c, f] + g2 * w[2, 0, c, f]
    b = g0 * w[0, 1, c, f] + g1 * w[1, 1, c, f] + g2 * w[2, 1, c, f]
    d = g0 * w[0, 2, c, f] + g1 * w[1, 2, c, f] + g2 * w[2, 2, c, f]
    return (a * F_QUARTER, (a + b + d) * F_MINUS_SIXTH, (a - b + d) * F_MINUS_SIXTH,
            a * F_24TH + b * F_12TH + d * F_SIXTH, a * F_24TH - b * F_12TH + d * F_SIXTH, d)


@njit(cache=True, nogil=True, parallel=True)
def filter_transform(w, i0, u):
    """u[6 * (i - i0) + j, c, f] = (G w[:, :, c, f] G^T)[i, j] for the rows i0 <= i < i0 + len(u) // 6:
    the whole transform (i0 = 0, 36 rows) or a group of its rows; loops over f innermost (SIMD)."""
    _, _, ch, nf = w.shape
    g = G32
    for c in prange(ch):
        for i in range(i0, i0 + u.shape[0] // 6):
            g0 = g[i, 0]; g1 = g[i, 1]; g2 = g[i, 2]
            r = 6 * (i - i0)
            for f in range(nf):  # row i of G along kernel rows, then G along columns, in registers
                t0, t1, t2, t3, t4, t5 = g_row_values(w, g0, g1, g2, c, f)
                u[r, c, f] = t0
                u[r + 1, c, f] = t1
                u[r + 2, c, f] = t2
                u[r + 3, c, f] = t3
                u[r + 4, c, f] = t4
                u[r + 5, c, f] = t5


def rows_per_group(channels, filters):
    """Rows of G (6 transformed planes each, 6 x C x F floats) per group of a filter transformed in
    groups: as many as fit in FILTER_BLOCK_BYTES, 1 to 6, dividing the 6 rows evenly."""
    fit = max(1, min(6, FILTER_BLOCK_BYTES // (6 * channels * filters * 4)))
    return max(r for r in (1, 2, 3, 6) if r <= fit)


@njit(cache=True, nogil=True, parallel=True)
def filter_transform_adjoint(du, dw):
    """dw[:, :, c, f] = G^T du[:, c, f] G (du (36, C, F) -> dw (3, 3, C, F))."""
    _, ch, nf = du.shape
    for c in prange(ch):
        t = np.empty((6, 3, nf), np.float32)  # G^T along the columns index
        for i in range(6):
            for f in range(nf):
                u0 = du[6 * i, c, f]; u1 = du[6 * i + 1, c, f]; u2 = du[6 * i + 2, c, f]
                u3 = du[6 * i + 3, c, f]; u4 = du[6 * i + 4, c, f]; u5 = du[6 * i + 5, c, f]
                t[i, 0, f] = u0 * 0.25 - (u1 + u2) * (1.0 / 6.0) + (u3 + u4) * (1.0 / 24.0)
                t[i, 1, f] = (u2 - u1) * (1.0 / 6.0) + (u3 - u4) * (1.0 / 12.0)
                t[i, 2, f] = (u3 + u4 - u1 - u2) * (1.0 / 6.0) + u5
        for j in range(3):  # G^T along the rows index
            for f in range(nf):
                u0 = t[0, j, f]; u1 = t[1, j, f]; u2 = t[2, j, f]
                u3 = t[3, j, f]; u4 = t[4, j, f]; u5 = t[5, j, f]
                dw[0, j, c, f] = u0 * 0.25 - (u1 + u2) * (1.0 / 6.0) + (u3 + u4) * (1.0 / 24.0)
                dw[1, j, c, f] = (u2 - u1) * (1.0 / 6.0) + (u3 - u4) * (1.0 / 12.0)
                dw[2, j, c, f] = (u3 + u4 - u1 - u2) * (1.0 / 6.0) + u5
