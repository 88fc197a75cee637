"""Stride-1 1-D convolution (channels-last, Keras's kernel (r, C, F), any dilation) by Winograd's
minimal filtering F(m, r): conv_nd's Conv1D forward route for kernels of 2 to 7 taps.

    if winograd1d.applicable(x.shape, w.shape, dilation, out_len):
        y = winograd1d.conv1d(x, w, bias, before, out_len, dilation)

How: the outputs of one sequence that share a residue modulo the dilation form an undilated
correlation; it is cut into tiles of m outputs, each reading ALPHA = m + r - 1 inputs (ALPHA is 8 for
every r, so m = 9 - r). A chunk of tiles (one thread's work, its buffers in cache) transforms its
inputs (B^T d, padding read as zeros by index: no padded copy), runs one product per transform
point, (tiles, C) @ (C, F) with the transformed kernel G w, then the output transform A^T adds the
bias while writing the outputs. ALPHA products of C x F per m outputs instead of r per output: r * m
/ ALPHA times fewer multiplications (1.75x for r = 2, 2.5x for r = 5), in longer products than the
per-tap ones.

The matrices are Toom-Cook's at the points 0, +-1, +-2, +-1/2 and infinity: with V the evaluation
matrix of polynomials of degree < ALPHA at those points (infinity picks the top coefficient) and V_k
its first k columns (the infinity row then picking coefficient k - 1), a linear convolution is
c = V^-1 [(V_r g) * (V_m d)], and the correlation y = C_g^T x is y = V_m^T [(V_r w) * (V^-T x)]:
A^T = V_m^T, G = V_r, B^T = V^-T.
"""
import functools

import numpy as np
from numba import njit

from tlkit.utils import threads

__all__ = ["applicable", "conv1d", "transforms"]

ALPHA = 8
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
# Routing (conv_nd): from this many input channels on the products are wide enough for Winograd to
# beat im2col + BLAS (measured: 1.6x faster at 128 channels, 1.4x slower at 64, where the per-tile
# transforms cost more than the products they save); narrower convs keep the patch matrix's products.
MIN_CHANNELS = 128
# Tiles of a chunk: its transformed inputs and products (ALPHA * tiles * (C + F) floats) stay
# within about this many bytes, so the output transform reads them from cache.
CHUNK_BYTES = 1 << 20
# Tiles cut at a sequence's end (or a residue class's, under dilation) compute outputs that are
# thrown away; past this fraction of waste the patch-matrix route is used instead.
MAX_WASTE = 0.25


@functools.lru_cache(maxsize=None)
def transforms(r):
    """(A^T (m, ALPHA), G (ALPHA, r), B^T (ALPHA, ALPHA)) in float64 for an r-tap kernel."""
    m = ALPHA - r + 1
    v = np.zeros((ALPHA, ALPHA))
    for j, p in enumerate(POINTS):
        v[j] = p ** np.arange(ALPHA)
    v[-1, -1] = 1.0

    def first(k):
        e = v[:, :k].copy()
        e[-1] = 0.0
        e[-1, k - 1] = 1.0
        return e

    return first(m).T, first(r), np.linalg.inv(v).T


def _origins(out_len, m, dilation):
    """First output of every tile of one sequence: per residue class, every m-th of its outputs."""
    parts = []
    for rho in range(min(dilation, out_len)):
        count = -(-(out_len - rho) // dilation)
        parts.append(rho + dilation * m * np.arange(-(-count // m), dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def applicable(x_shape, w_shape, dilation, out_len):
    """True for a stride-1 conv this route runs faster: 2-7 taps, >= MIN_CHANNELS input channels,
    and tiles that waste little (long enough sequences for the dilation)."""
    r, ch = w_shape[0], w_shape[1]
    if not 2 <= r <= ALPHA - 1 or ch < MIN_CHANNELS or out_len < 1:
        return False
    m = ALPHA - r + 1
    return len(_origins(out_len, m, dilation)) * m <= (1 + MAX_WASTE) * out_len


@njit(cache=True, nogil=True)
def _input_tiles(x, bt, origins, before, dilation, g0, g1, v):
    """v[a, g - g0] = sum_i bt[a, i] * x[n, t0 - before + i * dilation] for the tiles g in [g0, g1)
    (sequence n = g // len(origins), t0 = origins[g % len(origins)]); inputs outside x are zeros."""
    _, length, ch = x.shape
    alpha = bt.shape[0]
    per_seq = origins.shape[0]
    for g in range(g0, g1):
        n = g // per_seq
        t0 = origins[g % per_seq] - before
        row = g - g0
        for a in range(alpha):
            out = v[a, row]
            out[:] = 0.0
            for i in range(alpha):
                c = bt[a, i]
                pos = t0 + i * dilation
                if c == 0.0 or pos < 0 or pos >= length:
                    continue
                src = x[n, pos]
                for q in range(ch):
                    out[q] += c * src[q]


@njit(cache=True, nogil=True)
def _output_tiles(prods, at, bias, origins, dilation, g0, g1, y):
    """y[n, t0 + p * dilation] = bias + sum_a at[p, a] * prods[a, g - g0] for the tiles g in [g0, g1)
    and their outputs inside y."""
    _, out_len, _ = y.shape
    m, alpha = at.shape
    per_seq = origins.shape[0]
    for g in range(g0, g1):
        n = g // per_seq
        t0 = origins[g % per_seq]
        row = g - g0
        for p in range(m):
            t = t0 + p * dilation
            if t >= out_len:
                break
            out = y[n, t]
            out[:] = bias
            for a in range(alpha):
                c = at[p, a]
                if c == 0.0:
                    continue
                src = prods[a, row]
                for q in range(out.shape[0]):
                    out[q] += c * src[q]


def conv1d(x, w, bias, before, out_len, dilation):
    """y (N, out_len, F) float32, y[n, t] = bias + sum_j x[n, t - before + j * dilation] @ w[j], x read
    as zeros outside its length. x: C-contiguous float32 (N, L, C); w: (r, C, F); bias: (F,) or None."""
    n, _, ch = x.shape
    r, _, f = w.shape
    at, g, bt = transforms(r)
    u = np.ascontiguousarray(np.einsum("ak,kcf->acf", g, w.astype(np.float64)), np.float32)
    at32, bt32 = at.astype(np.float32), bt.astype(np.float32)
    b = np.zeros(f, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    origins = _origins(out_len, at.shape[0], dilation)
    total = n * len(origins)
    parts = max(threads.num_threads(), 1) if threads.chunks_can_run_numba() else 1
    rows = max(16, min(CHUNK_BYTES // (ALPHA * (ch + f) * 4), -(-total // (parts * threads.CHUNKS_PER_THREAD))))
    bounds = list(range(0, total, rows)) + [total]
    y = np.empty((n, out_len, f), np.float32)
    scratch = {}  # per thread slot: transformed inputs, products

    def chunk(slot, g0, g1):
        if slot not in scratch:
            scratch[slot] = (np.empty((ALPHA, rows, ch), np.float32), np.empty((ALPHA, rows, f), np.float32))
        v, prods = scratch[slot]
        k = g1 - g0
        _input_tiles(x, bt32, origins, before, dilation, g0, g1, v)
        for a in range(ALPHA):
            threads.product(v[a, :k], u[a], prods[a, :k])
        _output_tiles(prods, at32, b, origins, dilation, g0, g1, y)

    threads.limit_blas()
    threads.run_chunks(bounds, chunk, parts)
    return y
