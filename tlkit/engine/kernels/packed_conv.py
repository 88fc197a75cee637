"""A frozen conv with its BatchNormalization folded in (weights no one writes again), at inference, whose
product runs through gemm_blocks' micro-kernel with the bias, the residual and the clip fused:

    y = folded_conv(x, w, bias, strides, padding, dilation, residual, clip, out)   # None: not taken

- a strided 1x1 conv (ResNet50's x2 downsampling shortcuts and first convs) reads every s-th pixel:
  those pixels, gathered into a contiguous array (a quarter of the input at stride 2), are a 1x1
  stride-1 conv (epilogue.pointwise_conv), instead of im2col patches + BLAS + a pass for the epilogue;
- a k x k conv that neither Winograd nor the direct kernels take (ResNet50's 7x7/2 stem over RGB; its
  3x3 convs at 7x7 outputs, too few Winograd tiles at batch 1) multiplies im2col patches by the packed
  weights, tile by tile of output rows (each gathered, then multiplied while in cache), or, with few
  output pixels, all patches at once with the weight panels shared by the threads.

On one thread at batch 1 (AMD EPYC, AVX-512) the micro-kernel ran these products at 1.3-1.5x
OpenBLAS's single-thread sgemm (BENCHMARKS.md, issue 20, "one thread against ONNX Runtime"). With 8
lanes (AVX2) BLAS's own kernels were not measured against it on these shapes: the route is left to
conv.py there.
"""
import numpy as np

from tlkit.engine.kernels import conv_chunks, direct_conv, epilogue, gemm_blocks, stem_conv, winograd
from tlkit.engine.kernels.geometry import conv_output_shape, pads
from tlkit.engine.kernels.im2col import im2col_rows
from tlkit.utils import threads, workspace

__all__ = ["applicable", "folded_conv"]

# False sends these convs back to conv.py's routes (tests and A/B scripts take both sides).
ENABLED = True
# The deepest window measured here: a 3x3 conv over 512 channels (K = 4608).
LIMIT_K = 4608
# Patch bytes of one tile of output rows, as conv_chunks' im2col chunks: each tile costs ~15 us of Python
# and dispatch, so they are no smaller (ResNet50's 7x7 stem at batch 1: 256 KB tiles lost to 0.5-2 MB ones).
TILE_BYTES = conv_chunks.CHUNK_BYTES
# Winograd tiles (4x4 outputs, over the batch) up to which a folded 3x3 conv runs here rather than through
# Winograd (which takes it above winograd.FEW_TILES otherwise): at 16 tiles (14x14 at batch 1) each of
# Winograd's 36 products is 16 rows against a filter plane, and the transformed filter kept for it is 4x
# the kernel (ResNet50's six 256-channel conv4 3x3 convs: 56 MB). Through the packed weights the
# forward measured as fast on one thread (BENCHMARKS.md, branch resnet-b1). 0 leaves the choice to
# winograd.few_tiles.
WINOGRAD_TILES = 16
# Output pixels below which all patches are gathered at once and the product is split by weight panels
# (conv_chunks.packed_product), as a deep layer's few rows would not pay for one tile per thread.
FEW_ROWS = conv_chunks.COLUMN_SPLIT_ROWS


def applicable(x_shape, kernel_shape, strides, dilation, out_hw):
    """Whether folded_conv takes this conv (output out_hw): the 16-lane micro-kernel, dilation 1,
    K = kh * kw * C at most LIMIT_K, and not a conv another kernel takes: a stride-1 1x1 conv
    (pointwise_conv), a 3x3 RGB stem (stem_conv.py), a small window (direct_conv.py), Winograd's."""
    kh, kw, c, f = kernel_shape
    if not ENABLED or gemm_blocks.lanes() != 16 or tuple(dilation) != (1, 1) or kh * kw * c > LIMIT_K:
        return False
    if (kh, kw) == (1, 1):
        return tuple(strides) != (1, 1)
    if stem_conv.applicable(kernel_shape, strides, dilation) or direct_conv.applicable(kernel_shape, dilation,
                                                                                       strides=strides):
        return False
    return not (winograd.applicable(x_shape, kernel_shape, strides, dilation)
                and not winograd.few_tiles(x_shape[0], *out_hw) and not few_winograd_tiles(x_shape[0], *out_hw))


def few_winograd_tiles(n, oh, ow):
    """Whether a folded 3x3 conv of batch n and oh x ow outputs has at most WINOGRAD_TILES Winograd tiles."""
    return n * -(-oh // 4) * -(-ow // 4) <= WINOGRAD_TILES


def folded_conv(x, w, bias, strides, padding, dilation, residual, clip, out=None, packed=None):
    """clip(conv(x, w) + bias + residual) for a Conv2D's folded kernel w (kh, kw, C, F) (strides, padding,
    dilation as the layer's; residual (N, OH, OW, F) or None; clip (low, high), None for no bound, or
    None), into ``out`` (C-contiguous float32 of the output's shape) or a new array; None when this
    module does not take the conv (see applicable), and the caller's route runs instead.
    packed: a callable returning w as (K, F) and the bias packed for gemm_blocks, called when the conv
    is taken (the caller keeps the packing; w may then be w's shape alone), else gemm_blocks.pack_kept."""
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.dtype != np.float32 or not x.flags.c_contiguous:
        return None
    kh, kw, c, f = w if isinstance(w, tuple) else w.shape
    oh, ow = conv_output_shape(x.shape[1:3], (kh, kw), strides, padding)
    top, left = pads(x.shape[1], kh, strides[0], padding)[0], pads(x.shape[2], kw, strides[1], padding)[0]
    shape = (x.shape[0], oh, ow, f)
    if (min(shape) < 1 or not applicable(x.shape, (kh, kw, c, f), strides, dilation, (oh, ow))
            or (out is not None and (out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous))):
        return None
    low, high = clip if clip is not None else (None, None)
    k, rows = kh * kw * c, shape[0] * oh * ow
    packed = gemm_blocks.pack_kept(w.reshape(k, f), bias) if packed is None else packed()
    if (kh, kw) == (1, 1):  # a 1x1 window never pads: output pixel (r, c) reads input pixel (r * sh, c * sw)
        taken = np.ascontiguousarray(x[:, ::strides[0], ::strides[1]])
        return epilogue.pointwise_conv(taken, None, bias, residual, low, high, out, packed=packed)
    y = np.empty(shape, np.float32) if out is None else out
    y2 = y.reshape(rows, f)
    r2 = None if residual is None else np.ascontiguousarray(residual, np.float32).reshape(rows, f)
    lo = np.float32(-np.inf if low is None else low)
    hi = np.float32(np.inf if high is None else high)
    window = (kh, kw) + tuple(strides) + (1, 1)
    threads.limit_blas()
    if rows < FEW_ROWS:
        patches = workspace.take((rows, k), np.float32)
        im2col_rows(x, 0, shape[0], 0, oh, *window, top, left, ow, patches)
        conv_chunks.packed_product(patches, packed, y2, r2, lo, hi)
        workspace.give_back([patches])
        return y
    per = max(1, TILE_BYTES // (ow * k * 4))  # output rows of one image per tile
    tiles = [(n, r, min(r + per, oh)) for n in range(shape[0]) for r in range(0, oh, per)]
    scratch = {}  # patch matrix per thread slot

    def run(slot, first, last):
        patches = scratch.get(slot)
        if patches is None:
            patches = scratch[slot] = np.empty((per * ow, k), np.float32)
        for n, r0, r1 in tiles[first:last]:
            a, m = (n * oh + r0) * ow, (r1 - r0) * ow
            im2col_rows(x, n, n + 1, r0, r1, *window, top, left, ow, patches)
            gemm_blocks.product_epilogue(patches[:m], packed, y2[a:a + m], None if r2 is None else r2[a:a + m],
                                         lo, hi)

    parts = min(threads.num_threads(), len(tiles))
    if parts < 2 or not conv_chunks.worth_it(2 * rows * k * f):
        run(0, 0, len(tiles))
    else:
        chunks = min(len(tiles), parts * threads.chunks_per_thread())
        threads.run_chunks([len(tiles) * i // chunks for i in range(chunks + 1)], run, parts)
    return y
