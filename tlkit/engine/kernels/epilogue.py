"""What follows a convolution at inference, applied in one pass over its output while it is in
cache: the bias, a residual added and a clip (ReLU: [0, inf), ReLU6: [0, 6]).

    pointwise_conv(x, w, b, residual, 0.0, 6.0, out)   # 1x1 stride-1 conv: product + epilogue, through
                                                       # gemm_blocks where it is faster (conv_chunks.
                                                       # packed_product), else BLAS tile by tile, each thread
                                                       # taking runs of tiles (few rows: blocks of columns,
                                                       # conv_chunks.product_columns)
    add_residual_clip(y2, residual2, 0.0, 6.0)           # y2 (rows, F) C-contiguous; residual2 or None

Outputs smaller than PARALLEL_MIN_ELEMENTS get the single-threaded kernel: waking the other
threads costs more than the pass itself (a batch-1 forward makes ~100 such passes).
"""
import numpy as np
from numba import njit, prange

from tlkit.engine.kernels import conv_chunks, gemm_blocks
from tlkit.utils.threads import (MIN_SPLIT_FLOPS, chunks_per_thread, limit_blas, num_threads, product, run_chunks,
                                 session_bar)

__all__ = ["add_residual_clip", "pointwise_conv"]

PARALLEL_MIN_ELEMENTS = 1 << 16
# Rows of a pointwise conv's output per tile: the product writes it and the epilogue reads it
# back while it is still in the core's L2 cache.
TILE_BYTES = 512 << 10


# Blocks of rows the parallel epilogue's threads share.
PARALLEL_BLOCKS = 64


@njit(cache=True, nogil=True)
def _epilogue_rows(y, bias, residual, has_residual, lo, hi, first, last):
    """Rows first:last of y = clip(y + bias + residual, lo, hi): one plain loop nest per case, which
    the compiler vectorizes along the channels (a per-row helper with the cases tested inside the
    loop ran at a third of the speed, as long as the product it follows on small-channel convs)."""
    f = y.shape[1]
    if has_residual:
        for i in range(first, last):
            for j in range(f):
                y[i, j] = min(max(y[i, j] + bias[j] + residual[i, j], lo), hi)
    else:
        for i in range(first, last):
            for j in range(f):
                y[i, j] = min(max(y[i, j] + bias[j], lo), hi)


@njit(cache=True, nogil=True)
def _epilogue_columns(y, bias, residual, has_residual, lo, hi, c0, c1):
    """Columns c0:c1 of every row of y, as _epilogue_rows (a block of a product split by columns)."""
    for i in range(y.shape[0]):
        row = y[i, c0:c1]  # a contiguous run of a C-contiguous array: vectorizes
        b = bias[c0:c1]
        if has_residual:
            res = residual[i, c0:c1]
            for j in range(c1 - c0):
                row[j] = min(max(row[j] + b[j] + res[j], lo), hi)
        else:
            for j in range(c1 - c0):
                row[j] = min(max(row[j] + b[j], lo), hi)


@njit(cache=True, nogil=True, parallel=True)
def _epilogue_parallel(y, bias, residual, has_residual, lo, hi):
    rows = y.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for k in prange(blocks):
        _epilogue_rows(y, bias, residual, has_residual, lo, hi, rows * k // blocks, rows * (k + 1) // blocks)


@njit(cache=True, nogil=True)
def _epilogue_serial(y, bias, residual, has_residual, lo, hi):
    _epilogue_rows(y, bias, residual, has_residual, lo, hi, 0, y.shape[0])


def _bounds(low, high):
    return np.float32(-np.inf if low is None else low), np.float32(np.inf if high is None else high)


def _epilogue(y, bias, residual, low, high):
    """y = clip(y + bias + residual, low, high) in place on C-contiguous (rows, F) y."""
    b = np.zeros(y.shape[1], np.float32) if bias is None else bias
    r = residual if residual is not None else np.zeros((1, 1), np.float32)
    kernel = _epilogue_parallel if y.size >= PARALLEL_MIN_ELEMENTS else _epilogue_serial
    kernel(y, b, r, residual is not None, *_bounds(low, high))


def add_residual_clip(y, residual=None, low=None, high=None):
    """y = clip(y + residual, low, high) in place; y and residual (rows, F), y C-contiguous; a bound
    of None is no bound. Returns y."""
    _epilogue(y, None, None if residual is None else np.ascontiguousarray(residual, np.float32), low, high)
    return y


def pointwise_conv(x, w, bias=None, residual=None, low=None, high=None, out=None, packed=None):
    """clip(conv1x1(x, w) + bias + residual, low, high) for NHWC x (N, H, W, C), w (C, F), as one
    product per tile of output rows, each followed by the epilogue on it. residual: (N, H, W, F)
    or None; out: optional C-contiguous float32 (N, H, W, F) array to write into. w and bias must not
    be written in place between calls (folded weights): their packing for gemm_blocks is kept.
    packed: w and bias already packed for gemm_blocks (the caller keeps it; w may then be None)."""
    x = np.ascontiguousarray(x, np.float32)
    c, f = w.shape if packed is None else (packed.k, packed.f)
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
    b = np.zeros(f, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    r = np.zeros((1, 1), np.float32) if r2 is None else r2
    lo, hi = _bounds(low, high)
    limit_blas()
    if packed is not None:
        conv_chunks.packed_product(x2, packed, y2, r2, lo, hi)
        return out
    w = np.ascontiguousarray(w, np.float32)
    if gemm_blocks.worth_it(c, f):
        # the folded weights are new arrays when a weight changes: their packing is kept
        conv_chunks.packed_product(x2, gemm_blocks.pack_kept(w, None if bias is None else b), y2, r2, lo, hi)
        return out
    if conv_chunks.by_columns(rows, f, 2 * rows * c * f):  # few rows (batch 1, deep layers): see conv_chunks
        conv_chunks.product_columns(x2, w, y2, lambda c0, c1: _epilogue_columns(y2, b, r, r2 is not None, lo, hi,
                                                                                c0, c1))
        return out
    parts = 1 if 2 * rows * c * f < session_bar(MIN_SPLIT_FLOPS) else min(num_threads(), rows)
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
            _epilogue_serial(y2[a:z], b, r[a:z] if r2 is not None else r, r2 is not None, lo, hi)

    if parts < 2:
        run_tiles(0, 0, tiles)
    else:
        chunks = min(tiles, parts * chunks_per_thread())
        run_chunks([tiles * i // chunks for i in range(chunks + 1)], run_tiles, parts)
    return out
