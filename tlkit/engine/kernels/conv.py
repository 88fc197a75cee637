"""2-D convolution (NHWC, kernels (kh, kw, in, out) as Keras stores them): forward and both backwards.

    y = conv2d_forward(x, w, b, strides=(1, 1), padding="same", relu=True)
    dx = conv2d_backward_input(dy, w, x.shape, padding="same")
    dw, db = conv2d_backward_weights(x, dy, w.shape, padding="same")

How: the output is cut into tiles (a block of output rows of one image, or several whole images) whose
im2col patch matrix fits in ~TILE_BYTES; numba fills the patches (im2col.py), numpy's BLAS does the product
straight into the output, then a numba pass adds bias and ReLU on the tile while it is in cache. No
batch-sized im2col buffer ever exists. 1x1 stride-1 convs: products over (N*H*W, C), most through
gemm_blocks.py (bias + ReLU fused). numba regions and BLAS calls alternate, never nest. Products worth
splitting run as chunks shared by the threads (conv_chunks.py: each tile on one thread, or, with few
output pixels, blocks of output channels); so do the direct kernels on batches of a few images.

Stride-1 3x3 convs go through Winograd F(4x4, 3x3) when faster (winograd.takes); ``wino_filter=
winograd_transform_filter(w)`` reuses the filter transform. Small windows (kh * kw * C <= direct_conv.MAX_K, e.g.
3x3 over RGB at stride 1; see applicable) skip im2col + BLAS, too thin there, for a direct kernel with bias and
ReLU fused. A conv whose output only feeds a max pooling (SqueezeNet's conv1 + pool1) can run fused with it, so
the conv output is never stored whole (small windows; Winograd convs with a 2x2/2 pool):

    p = conv2d_maxpool_forward(x, w, b, strides=2, relu=True, pool_size=3, pool_strides=2)
"""
import functools

import numpy as np

from tlkit.engine.kernels import conv_chunks, conv_pool_bands, direct_conv, gemm_blocks, winograd, winograd_backward
from tlkit.engine.kernels.bias_grad import bias_grad
from tlkit.engine.kernels.geometry import conv_output_shape, padding_mode, pads, pair
from tlkit.engine.kernels.im2col import add_bias_relu, col2im_rows, im2col_rows
from tlkit.engine.kernels.pool import check_out as check_pooled_out, max_pool2d_forward
from tlkit.utils import threads
from tlkit.utils.threads import matmul

__all__ = ["conv2d_forward", "conv2d_forward_padded", "conv2d_maxpool_forward", "fuses_max_pool",
           "conv2d_backward_input", "conv2d_backward_weights", "winograd_transform_filter"]

winograd_transform_filter = winograd.transform_filter
winograd_cached_filter_wanted = winograd.cached_filter_wanted

# Patch-matrix budget per tile: small enough to stay in L2+L3 on common server CPUs, large enough to keep BLAS
# products >= ~1000 rows on VGG16's layers; sweep: BENCHMARKS.md, scripts/bench_engine.py --tiles.
TILE_BYTES = 4 << 20
# 1x1 convs below this many flops run on the calling thread, product and epilogue: handing halves to another
# thread costs more than it saves (SqueezeNet's fire modules at batch 1).
POINTWISE_SPLIT_FLOPS = 16_000_000

# ---------------------------------------------------------------------------------------------
# argument checks

def _as_nhwc(a, what, fn):
    a = np.asarray(a)
    if a.ndim != 4:
        raise ValueError(f"{fn}: {what} must be 4-D (batch, height, width, channels), got shape {a.shape}.")
    return np.ascontiguousarray(a, dtype=np.float32)


def _kernel(w, channels, fn):
    w = np.asarray(w)
    if w.ndim != 4:
        raise ValueError(f"{fn}: kernel must be 4-D (kh, kw, in_channels, filters), got shape {w.shape}.")
    if w.shape[2] != channels:
        raise ValueError(f"{fn}: kernel {w.shape} expects {w.shape[2]} input channels but the input has {channels}. "
                         "Check the kernel layout is (kh, kw, in_channels, filters).")
    return np.ascontiguousarray(w, dtype=np.float32)


def _bias(b, filters, fn):
    if b is None:
        return None
    b = np.ascontiguousarray(b, dtype=np.float32)
    if b.shape != (filters,):
        raise ValueError(f"{fn}: bias must have shape ({filters},) (one per filter), got {b.shape}.")
    return b


class _Geometry:
    """Output size and padding of one convolution, validated."""

    def __init__(self, x_shape, kernel_hw, strides, padding, dilation, fn):
        self.strides = pair(strides, "strides", fn)
        self.dilation = pair(dilation, "dilation", fn)
        padding = padding_mode(padding, fn=fn)
        self.kh, self.kw = kernel_hw
        self.h, self.w = x_shape[1], x_shape[2]
        self.oh, self.ow = conv_output_shape((self.h, self.w), kernel_hw, self.strides, padding, self.dilation)
        self.pad_top = pads(self.h, self.kh, self.strides[0], padding, self.dilation[0])[0]
        self.pad_left = pads(self.w, self.kw, self.strides[1], padding, self.dilation[1])[0]

    @property
    def window(self):
        return (self.kh, self.kw) + self.strides + self.dilation


@functools.lru_cache(maxsize=256)
def _cached_geometry(x_shape, kernel_hw, strides, padding, dilation, fn):
    return _Geometry(x_shape, kernel_hw, strides, padding, dilation, fn)


def _geometry(x_shape, kernel_hw, strides, padding, dilation, fn):
    """_Geometry, checked and computed once per distinct arguments (a training step asks for the same
    few every time); arguments that can't be a cache key (lists) are computed each time."""
    try:
        return _cached_geometry(tuple(x_shape), tuple(kernel_hw), strides, padding, dilation, fn)
    except TypeError:
        return _Geometry(x_shape, kernel_hw, strides, padding, dilation, fn)


# ---------------------------------------------------------------------------------------------
# tiled im2col + BLAS

def _tiles(n, out_h, row_bytes, budget=None, at_least=1):
    """(n0, n1, r0, r1) blocks: a few output rows of one image, or several whole images; at most
    ``budget`` bytes (TILE_BYTES, read at the call) at row_bytes per output row, and ``at_least`` blocks
    when there are rows enough."""
    budget = TILE_BYTES if budget is None else budget
    rows = max(1, min(budget // max(row_bytes, 1), -(-n * out_h // at_least)))
    if rows >= out_h:
        per = rows // out_h
        return [(i, min(i + per, n), 0, out_h) for i in range(0, n, per)]
    return [(i, i + 1, r, min(r + rows, out_h)) for i in range(n) for r in range(0, out_h, rows)]


def _pointwise(window):
    """1x1 stride 1: the conv is a matrix product over (N*H*W, C)."""
    return window[:4] == (1, 1, 1, 1)


def _direct(x, wmat, b, window, pad_top, pad_left, out_hw, relu, out=None, lo=0, packed=None):
    """y[n, r, c] = window(n, r, c) . wmat (+ b, relu) for every output pixel, tile by tile. out: C-contiguous
    (N, OH, OW, >= lo + F) array; y goes to its channels [lo, lo + F). packed: see conv2d_forward."""
    n, _, _, ch = x.shape
    out_h, out_w = out_hw
    k, f = wmat.shape
    y = np.empty((n, out_h, out_w, f), np.float32) if out is None else out
    has_bias = b is not None
    bias = b if has_bias else np.zeros(f, np.float32)
    direct_1x1 = _pointwise(window) and (pad_top, pad_left) == (0, 0) and out_hw == (x.shape[1], x.shape[2])
    flops = 2 * n * out_h * out_w * k * f
    if direct_1x1 and gemm_blocks.worth_it(k, f):
        conv_chunks.packed_product(x.reshape(-1, ch), packed or gemm_blocks.pack(wmat, b), y.reshape(-1, y.shape[3])[
            :, lo:lo + f], None, 0.0 if relu else -np.inf, np.inf, threads.session_bar(POINTWISE_SPLIT_FLOPS))
        return y[..., lo:lo + f]
    if direct_1x1 and flops < threads.session_bar(POINTWISE_SPLIT_FLOPS) and conv_chunks.CHUNKED is not True:
        wide = y.reshape(-1, y.shape[3])
        threads.limit_blas()
        threads.product(x.reshape(-1, ch), wmat, wide[:, lo:lo + f])
        if has_bias or relu:
            add_bias_relu(wide, bias, has_bias, relu, lo)
        return y[..., lo:lo + f]
    if conv_chunks.by_columns(n * out_h * out_w, f, flops):
        conv_chunks.im2col_product_columns(x, wmat, bias, has_bias, relu, window, pad_top, pad_left, direct_1x1, y, lo)
        return y[..., lo:lo + f]
    if conv_chunks.worth_it(flops):
        parts = max(threads.num_threads(), 1)
        tiles = _tiles(n, out_h, out_w * (k + f) * 4, conv_chunks.CHUNK_BYTES, parts * threads.chunks_per_thread())
        conv_chunks.im2col_product(x, wmat, bias, has_bias, relu, window, pad_top, pad_left, direct_1x1, tiles, y,
                                   lo, parts)
        return y[..., lo:lo + f]
    wide = y.reshape(-1, y.shape[3])
    y2 = wide[:, lo:lo + f]
    tiles = _tiles(n, out_h, out_w * (k if not direct_1x1 else f) * 4)
    patches = None if direct_1x1 else np.empty((max((t[1] - t[0]) * (t[3] - t[2]) for t in tiles) * out_w, k),
                                               np.float32)
    x2 = x.reshape(-1, ch)
    for n0, n1, r0, r1 in tiles:
        a = (n0 * out_h + r0) * out_w
        m = (n1 - n0) * (r1 - r0) * out_w
        if direct_1x1:
            src = x2[a:a + m]
        else:
            im2col_rows(x, n0, n1, r0, r1, *window, pad_top, pad_left, out_w, patches)
            src = patches[:m]
        matmul(src, wmat, y2[a:a + m])
        if has_bias or relu:
            add_bias_relu(wide[a:a + m], bias, has_bias, relu, lo)
    return y[..., lo:lo + f]


def conv2d_forward(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1), relu=False, wino_filter=None,
                   out=None, packed=None):
    """y (N, OH, OW, F) float32 = conv(x, w) + b, then max(., 0) if relu.

    x: (N, H, W, C); w: (kh, kw, C, F); b: (F,) or None. padding 'same' is TF's (odd pixel bottom/right).
    wino_filter / packed: optional cached ``winograd_transform_filter(w)`` / ``gemm_blocks.pack(w[0, 0], b)``
    (a 1x1 kernel), else computed per call where their route runs. out: optional float32 array to write y
    into and return, e.g. a channel slice ``buf[..., 64:128]`` of a concatenation buffer (rows may be
    strided; channels must be contiguous).
    """
    fn = "conv2d_forward"
    x = _as_nhwc(x, "x", fn)
    w = _kernel(w, x.shape[3], fn)
    b = _bias(b, w.shape[3], fn)
    g = _geometry(x.shape, w.shape[:2], strides, padding, dilation, fn)
    lo = 0
    if out is not None:
        _check_out(out, (x.shape[0], g.oh, g.ow, w.shape[3]), fn)
        whole, lo = _channels_of(out)
        if whole is None:  # not a channel slice of a C-contiguous array: compute, then copy
            out[...] = conv2d_forward(x, w, b, strides, padding, dilation, relu, wino_filter)
            return out
        out = whole
    if winograd.takes(x.shape, w.shape, g.strides, g.dilation, (g.oh, g.ow), wino_filter is not None):
        return winograd.conv3x3(x, w if wino_filter is None else None, wino_filter, b, g.pad_top, g.pad_left,
                                (g.oh, g.ow), relu, out, lo)
    if direct_conv.applicable(w.shape, g.dilation, strides=g.strides):
        f = w.shape[3]
        y = np.empty((x.shape[0], g.oh, g.ow, f), np.float32) if out is None else out
        wk, bias = w.reshape(-1, f), (np.zeros(f, np.float32) if b is None else b)
        conv_chunks.by_jobs(x.shape[0] * g.oh, lambda j0, j1: direct_conv.conv_bias_relu(
            x, wk, bias, relu, g.kh, g.kw, *g.strides, g.pad_top, g.pad_left, j0, j1, y, lo))
        return y[..., lo:lo + f]
    return _direct(x, w.reshape(-1, w.shape[3]), b, g.window, g.pad_top, g.pad_left, (g.oh, g.ow), relu, out, lo,
                   packed)


def conv2d_forward_padded(x, w, b, strides, dilation, pad_top, pad_left, out_hw):
    """conv2d_forward with explicit zero padding (pad_top, pad_left before; the bottom and right
    following from out_hw), read by index: no padded copy of x. E.g. Conv1D's 'causal' padding.
    x, w, b: checked float32 arrays as conv2d_forward takes them."""
    window = tuple(w.shape[:2]) + tuple(strides) + tuple(dilation)
    return _direct(x, w.reshape(-1, w.shape[3]), b, window, pad_top, pad_left, tuple(out_hw), False)


def fuses_max_pool(input_shape, kernel_shape, strides, dilation, pool_size, pool_strides=None,
                   pool_padding="valid"):
    """True when conv2d_maxpool_forward runs this conv and max pool in one pass, never holding the
    full conv output: small windows (direct_conv), or Winograd convs with a 2x2 stride-2 'valid'
    pool. input_shape: (batch or None, H, W, C); kernel_shape: (kh, kw, C, F)."""
    fn = "fuses_max_pool"
    strides, dilation = pair(strides, "strides", fn), pair(dilation, "dilation", fn)
    pool = pair(pool_size, "pool_size", fn)
    pool_strides = pool if pool_strides is None else pair(pool_strides, "pool_strides", fn)
    if direct_conv.applicable(kernel_shape, dilation, pooled=True):
        return True
    return _winograd_pools(input_shape, kernel_shape, strides, dilation, pool, pool_strides, pool_padding)


def _winograd_pools(x_shape, w_shape, strides, dilation, pool, pool_strides, pool_padding):
    """The Winograd output transform can pool 2x2/2 blocks while they are still in registers."""
    return (pool == (2, 2) and pool_strides == (2, 2) and pool_padding == "valid"
            and None not in tuple(x_shape[1:3])  # sizes known only at call time: Winograd may not apply
            and winograd.applicable(x_shape, w_shape, strides, dilation))


def conv2d_maxpool_forward(x, w, b=None, strides=(1, 1), padding="valid", relu=False, pool_size=(2, 2),
                           pool_strides=None, pool_padding="valid", out=None, wino_filter=None):
    """max_pool(conv2d_forward(x, w, b, strides, padding, relu=relu)): (N, PH, PW, F) float32.

    pool_size / pool_strides / pool_padding are MaxPooling2D's (pool_strides None means
    pool_size, as in Keras; TF padding: a padded cell never wins). When ``fuses_max_pool`` says
    so, one fused kernel computes only the few conv rows (or Winograd tiles) each pooled row
    needs; otherwise this is exactly the two calls. out: optional C-contiguous float32 array of
    the pooled shape to write into. wino_filter: as for conv2d_forward.

        p = conv2d_maxpool_forward(x, w, b, strides=2, relu=True, pool_size=3, pool_strides=2)
    """
    fn = "conv2d_maxpool_forward"
    x = _as_nhwc(x, "x", fn)
    w = _kernel(w, x.shape[3], fn)
    b = _bias(b, w.shape[3], fn)
    g = _geometry(x.shape, w.shape[:2], strides, padding, (1, 1), fn)
    pool = pair(pool_size, "pool_size", fn)
    pool_strides = pool if pool_strides is None else pair(pool_strides, "pool_strides", fn)
    pool_padding = padding_mode(pool_padding, "pool_padding", fn)
    if pool_padding == "valid" and (pool[0] > g.oh or pool[1] > g.ow):
        raise ValueError(f"{fn}: pool_size {pool} does not fit in the convolution's {g.oh}x{g.ow} output with "
                         "pool_padding='valid'. Use a smaller pool, pool_padding='same' or a larger input.")
    p_rows, p_cols = conv_output_shape((g.oh, g.ow), pool, pool_strides, pool_padding)
    shape = (x.shape[0], p_rows, p_cols, w.shape[3])
    check_pooled_out(out, shape, fn)
    y = np.empty(shape, np.float32) if out is None else out
    if _winograd_pools(x.shape, w.shape, g.strides, g.dilation, pool, pool_strides, pool_padding) and not \
            winograd.few_tiles(x.shape[0], g.oh, g.ow, *w.shape[2:], wino_filter is not None):
        winograd.conv3x3(x, w if wino_filter is None else None, wino_filter, b, g.pad_top, g.pad_left,
                         (g.oh, g.ow), relu, y, pool2=True)
        return y
    if not direct_conv.applicable(w.shape, g.dilation, pooled=True):
        conv_y = conv2d_forward(x, w, b, g.strides, padding, relu=relu, wino_filter=wino_filter)
        return max_pool2d_forward(conv_y, pool, pool_strides, pool_padding, with_argmax=False, out=y)[0]
    f = w.shape[3]
    wk, bias = w.reshape(-1, f), (np.zeros(f, np.float32) if b is None else b)
    ptop = pads(g.oh, pool[0], pool_strides[0], pool_padding)[0]
    pleft = pads(g.ow, pool[1], pool_strides[1], pool_padding)[0]
    if conv_pool_bands.takes(w.shape, g.dilation):
        return conv_pool_bands.conv_maxpool_bands(x, wk, bias, b is not None, relu, g.window, g.pad_top, g.pad_left,
                                                  (g.oh, g.ow), pool, pool_strides, (ptop, pleft), y)

    # Each image's pooled rows are split into parts so that small batches still feed every thread.
    parts = min(p_rows, max(1, -(-threads.CHUNKS_PER_THREAD * threads.num_threads() // x.shape[0])))
    conv_chunks.by_jobs(x.shape[0] * parts, lambda j0, j1: direct_conv.conv_bias_relu_maxpool(
        x, wk, bias, relu, g.kh, g.kw, *g.strides, g.pad_top, g.pad_left, (g.oh, g.ow), *pool, *pool_strides,
        ptop, pleft, parts, j0, j1, y))
    return y


def conv2d_backward_input(dy, w, x_shape, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """dx (N, H, W, C): gradient of the loss wrt the conv's input, given dy = dL/dy (N, OH, OW, F)."""
    fn = "conv2d_backward_input"
    dy = _as_nhwc(dy, "dy", fn)
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != 4:
        raise ValueError(f"{fn}: x_shape must be (batch, height, width, channels), got {x_shape}.")
    w = _kernel(w, x_shape[3], fn)
    g = _geometry(x_shape, w.shape[:2], strides, padding, dilation, fn)
    _check_dy(dy, x_shape[0], g, w.shape[3], fn)
    kh, kw, ch, f = w.shape
    if g.strides == (1, 1):
        # Stride 1: dx is the 'full' correlation of dy with the kernel rotated 180 degrees and
        # in/out swapped, i.e. another forward conv (same tiling, same Winograd fast path).
        top = (kh - 1) * g.dilation[0] - g.pad_top
        left = (kw - 1) * g.dilation[1] - g.pad_left
        out_hw = x_shape[1:3]
        if winograd.applicable(dy.shape, (kh, kw, f, ch), g.strides, g.dilation, out_hw, small_outputs=False):
            return winograd_backward.conv3x3_backward_input(dy, w, top, left, out_hw)
        w_rot = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))
        return _direct(dy, w_rot.reshape(-1, ch), None, g.window, top, left, out_hw, False)
    # Strided: transposed product per tile, then scatter the patch gradients back (col2im).
    dx = np.zeros(x_shape, np.float32)
    wmat_t = w.reshape(-1, f).T
    tiles = _tiles(x_shape[0], g.oh, g.ow * kh * kw * ch * 4)
    dpatches = np.empty((max((t[1] - t[0]) * (t[3] - t[2]) for t in tiles) * g.ow, kh * kw * ch), np.float32)
    dy2 = dy.reshape(-1, f)
    for n0, n1, r0, r1 in tiles:
        a = (n0 * g.oh + r0) * g.ow
        m = (n1 - n0) * (r1 - r0) * g.ow
        matmul(dy2[a:a + m], wmat_t, dpatches[:m])
        col2im_rows(dpatches, n0, n1, r0, r1, *g.window, g.pad_top, g.pad_left, g.ow, dx)
    return dx


def conv2d_backward_weights(x, dy, kernel_shape, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """(dw (kh, kw, C, F), db (F,)): gradients wrt the kernel and the bias; db = dy.sum((0, 1, 2))."""
    fn = "conv2d_backward_weights"
    x = _as_nhwc(x, "x", fn)
    dy = _as_nhwc(dy, "dy", fn)
    kernel_shape = tuple(int(s) for s in kernel_shape)
    if len(kernel_shape) != 4 or kernel_shape[2] != x.shape[3]:
        raise ValueError(f"{fn}: kernel_shape must be (kh, kw, {x.shape[3]}, filters) for this input, "
                         f"got {kernel_shape}.")
    kh, kw, ch, f = kernel_shape
    g = _geometry(x.shape, (kh, kw), strides, padding, dilation, fn)
    _check_dy(dy, x.shape[0], g, f, fn)
    dy2 = dy.reshape(-1, f)
    db = bias_grad(dy2)
    if _pointwise(g.window):
        return matmul(x.reshape(-1, ch).T, dy2, np.empty((ch, f), np.float32)).reshape(kernel_shape), db
    if winograd.applicable(x.shape, kernel_shape, g.strides, g.dilation, (g.oh, g.ow), small_outputs=False):
        return winograd_backward.conv3x3_backward_weights(x, dy, g.pad_top, g.pad_left), db
    dw = np.zeros((kh * kw * ch, f), np.float32)
    part = np.empty_like(dw)
    tiles = _tiles(x.shape[0], g.oh, g.ow * kh * kw * ch * 4)
    patches = np.empty((max((t[1] - t[0]) * (t[3] - t[2]) for t in tiles) * g.ow, kh * kw * ch), np.float32)
    for n0, n1, r0, r1 in tiles:
        a = (n0 * g.oh + r0) * g.ow
        m = (n1 - n0) * (r1 - r0) * g.ow
        im2col_rows(x, n0, n1, r0, r1, *g.window, g.pad_top, g.pad_left, g.ow, patches)
        matmul(patches[:m].T, dy2[a:a + m], part)
        dw += part
    return dw.reshape(kernel_shape), db


def _check_out(out, shape, fn):
    """out must hold y exactly: float32, y's shape, channels contiguous, pixels evenly strided."""
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != shape:
        raise ValueError(f"{fn}: out must be a float32 array of shape {shape} (this convolution's output), got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}.")
    try:
        np.reshape(out, (-1, shape[3]), copy=False)
    except ValueError:
        raise ValueError(f"{fn}: out's pixels must be evenly strided with contiguous channels (a C-contiguous "
                         f"array or a channel slice of one); got strides {out.strides}.") from None
    if out.strides[3] != 4:
        raise ValueError(f"{fn}: out's channels must be contiguous; got strides {out.strides}.")


def _channels_of(out):
    """(whole, lo) with out == whole[..., lo:lo + F] and whole C-contiguous, or (None, 0). Kernels
    write into ``whole``: numba vectorizes only over arrays it knows are contiguous."""
    if out.flags.c_contiguous:
        return out, 0
    whole = out.base
    if (isinstance(whole, np.ndarray) and whole.ndim == 1 and whole.flags.c_contiguous and whole.dtype == np.float32
            and out.strides[2] % 4 == 0):
        # A channel slice of a 4-D view of the start of a flat buffer (the inference plan's recycled
        # buffers): that view, rebuilt from out's strides, is the C-contiguous array the slice is of.
        size = out.shape[0] * out.shape[1] * out.shape[2] * (out.strides[2] // 4)
        whole = whole[:size].reshape(out.shape[:3] + (out.strides[2] // 4,)) if 0 < size <= whole.size else None
    if (isinstance(whole, np.ndarray) and whole.flags.c_contiguous and whole.dtype == np.float32
            and whole.shape[:3] == out.shape[:3] and whole.ndim == 4):
        lo, rem = divmod(out.ctypes.data - whole.ctypes.data, 4)
        if rem == 0 and 0 <= lo <= whole.shape[3] - out.shape[3] and out.strides == whole.strides:
            return whole, lo
    return None, 0


def _check_dy(dy, n, g, f, fn):
    want = (n, g.oh, g.ow, f)
    if dy.shape != want:
        raise ValueError(f"{fn}: dy has shape {dy.shape} but this convolution's output is {want}.")
