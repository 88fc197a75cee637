"""What follows a convolution at inference, applied in one pass over its output while it is in
cache: the bias, a residual added and a clip (ReLU: [0, inf), ReLU6: [0, 6]).

    pointwise_conv(x, w, b, residual, 0.0, 6.0, out)   # 1x1 stride-1 conv: product + epilogue, tile by tile,
                                                       # each thread taking runs of tiles
    add_residual_clip(y2, residual2, 0.0, 6.0)           # y2 (rows, F) C-contiguous; residual2 or None

Outputs smaller than PARALLEL_MIN_ELEMENTS get the single-threaded kernel: waking the other
threads costs more than the pass itself (a batch-1 forward makes ~100 such passes).
"""
import numpy as np
from numba import njit, prange

from tlkit.utils.threads import (CHUNKS_PER_THREAD, MIN_SPLIT_FLOPS, limit_blas, num_threads, product,
                                 run_chunks)

__all__ = ["add_residual_clip", "pointwise_conv"]

PARALLEL_MIN_ELEMENTS = 1 << 16
# Rows of a pointwise conv's output per tile: the product writes it and the epilogue reads it
# back while it is still in the core's L2 cache.
TILE_BYTES = 512 << 10


@njit(cache=True, nogil=True)
def _row_epilogue(row, bias, res_row, has_bias, has_residual, lo, hi):
    for j in range(row.shape[0]):
        v = row[j]
        if has_bias:
            v += bias[j]
        if has_residual:
            v += res_row[j]
        row[j] = min(max(v, lo), hi)


@njit(cache=True, nogil=True, parallel=True)
def _epilogue_parallel(y, bias, residual, has_bias, has_residual, lo, hi):
    for i in prange(y.shape[0]):
        _row_epilogue(y[i], bias, residual[np.int64(i) if has_residual else np.int64(0)], has_bias, has_residual, lo, hi)


@njit(cache=True, nogil=True)
def _epilogue_serial(y, bias, residual, has_bias, has_residual, lo, hi):
    for i in range(y.shape[0]):
        _row_epilogue(y[i], bias, residual[np.int64(i) if has_residual else np.int64(0)], has_bias, has_residual, lo, hi)


def _epilogue(y, bias, residual, low, high):
    """y = clip(y + bias + residual, low, high) in place on C-contiguous (rows, F) y."""
    has_bias, has_residual = bias is not None, residual is not None
    b = bias if has_bias else np.zeros(1, np.float32)
    r = residual if has_residual else np.zeros((1, 1), np.float32)
    kernel = _epilogue_parallel if y.size >= PARALLEL_MIN_ELEMENTS else _epilogue_serial
    kernel(y, b, r, has_bias, has_residual, np.float32(-np.inf if low is None else low),
           np.float32(np.inf if high is None else high))


def add_residual_clip(y, residual=None, low=None, high=None):
    """y = clip(y + residual, low, high) in place; y and residual (rows, F), y C-contiguous; a bound
    of None is no bound. Returns y."""
    _epilogue(y, None, None if residual is None else np.ascontiguousarray(residual, np.float32), low, high)
    return y


def pointwise_conv(x, w, bias=None, residual=None, low=None, high=None, out=None):
    """clip(conv1x1(x, w) + bias + residual, low, high) for NHWC x (N, H, W, C), w (C, F), as one
    product per tile of output rows, each followed by the epilogue on it. residual: (N, H, W, F)
    or None; out: optional C-contiguous float32 (N, H, W, F) array to write into."""
    x = np.ascontiguousarray(x, np.float32)
    c, f = w.shape
    if x.ndim != 4 or x.shape[3] != c:
        raise ValueError(f"pointwise_conv: expected an (N, H, W, {c}) input, got shape {x.shape}.")
    shape = x.shape[:3] + (f,)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"pointwise_conv: out must be a C-contiguous float32 array of shape {shape}, "
                         f"got {out.dtype} {out.shape}.")
    rows = x.size // c
    x2, y2 = x.reshape(rows, c), out.reshape(rows, f)
    r2 = None if residual is None else np.ascontiguousarray(residual, np.float32).reshape(rows, f)
    b = np.zeros(1, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    r = np.zeros((1, 1), np.float32) if r2 is None else r2
    w = np.ascontiguousarray(w, np.float32)
    lo, hi = np.float32(-np.inf if low is None else low), np.float32(np.inf if high is None else high)
    limit_blas()
    parts = 1 if 2 * rows * c * f < MIN_SPLIT_FLOPS else min(num_threads(), rows)
    # Tiles small enough for L2, and at least one per thread (a batch-1 layer may be one tile).
    tile = max(1, min(TILE_BYTES // (4 * f), -(-rows // parts)))
    tiles = -(-rows // tile)

    def run_tiles(slot, first, last):
        # Each thread takes whole runs of tiles: one hand-off per run, not two per tile (a
        # product split over the threads, then a parallel epilogue), which cost more than the
        # work on the small-channel convs of MobileNetV2 and EfficientNet.
        for a in range(first * tile, min(last * tile, rows), tile):
            z = min(a + tile, rows)
            product(x2[a:z], w, y2[a:z])
            _epilogue_serial(y2[a:z], b, r[a:z] if r2 is not None else r, bias is not None, r2 is not None, lo, hi)

    if parts < 2:
        run_tiles(0, 0, tiles)
    else:
        chunks = min(tiles, parts * CHUNKS_PER_THREAD)
        run_chunks([tiles * i // chunks for i in range(chunks + 1)], run_tiles, parts)
    return out
