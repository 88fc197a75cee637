"""Winograd F(4x4, 3x3) for stride-1, dilation-1 3x3 convolutions (NHWC, kernels (3, 3, C, F)).

Each 4x4 block of output pixels comes from a 6x6 input tile: Y = A^T [(G g G^T) * (B^T d B)] A.
Over channels the element-wise product becomes 36 independent matrix products
(tiles x C) @ (C x F), done by numpy's BLAS; numba does the input transform (gather 6x6 tiles,
zero outside the image) and the output transform (+ bias, ReLU, crop partial tiles). That is 36
multiplies per 16 outputs instead of 144: about 4x fewer flops than the direct convolution.

    u = transform_filter(w)                  # (36, C, F); cache it while w does not change
    y = conv3x3(x, None, u, b, 1, 1, x.shape[1:3], relu=True)   # == 'same' conv + bias + ReLU
    dw = winograd_backward.conv3x3_backward_weights(x, dy, 1, 1)  # its kernel gradient, same 4x saving

Interpolation points 0, +-1, +-2, inf (Lavin & Gray 2015); float32 error stays ~1e-5 of the
output's scale for VGG-sized inputs. `applicable` says when this beats the direct path.
"""
import numpy as np

from tlkit.engine.kernels import conv_chunks, jobs, winograd_filters, winograd_products
from tlkit.engine.kernels.intrinsics import serial_kernel
from tlkit.engine.kernels.winograd_filters import (  # the filter side, also named here (winograd.G, ...)
    G,  # noqa: F401
    cached_filter_wanted,
    filter_transform,
    filter_transform_adjoint,  # noqa: F401
    transform_filter,
)
from tlkit.utils import threads, worker_pool, workspace
from tlkit.utils.threads import matmul

# A chunk (run of tile rows) is transformed, multiplied and written back before the next: its
# transformed input + products (36 x tiles x (C + F) floats) aim at ~4 MB so they mostly stay in
# cache between the numba and BLAS passes, with at least MIN_TILES tiles: thinner products waste
# BLAS (deep layers: 512x512 filters, few tiles), and every chunk costs 38 thread hand-offs,
# which on shared, busy cores cost far more than the cache misses of bigger chunks.
CHUNK_BYTES = 4 << 20
MIN_TILES = 256
# Layers whose tile rows are small (at least MIN_THREAD_ROWS of them in THREAD_BYTES: SqueezeNet's)
# run as chunks of threads.run_chunks instead: each thread transforms, multiplies (BLAS on one
# thread) and writes back its own run of tile rows in its own cache; one hand-off per layer
# instead of three per chunk. Layers with wide rows keep the shared chunks: per-thread chunks
# would be thin products or out of cache, and many (VGG16: 2-3x the CPU time at 512 channels).
# THREADED: None chooses; True / False force a route.
THREAD_BYTES = 2 << 20
MIN_THREAD_ROWS = 8
THREADED = None
# Below these the direct path wins (see applicable). The forward also takes 6x6 and 7x7 outputs
# (ResNet50's conv5 at 224) with >= SMALL_OUT_CHANNELS channels in and out: cropped pixels waste
# 2.25x / 1.3x of a tile's products, and it still runs 1.3-2.9x faster than im2col at batch 1-32
# (128-512 channels); with fewer channels (SqueezeNet's 16 -> 64 at 32x32 input) im2col wins at
# batch 1, and at 4x4 and 5x5 at most batches. The gradients keep MIN_OUT until measured there.
MIN_CHANNELS = 16
MIN_OUT = 8
SMALL_OUT = 6
SMALL_OUT_CHANNELS = 128
# A forward of fewer tiles than this (4x4 output blocks, over the batch) goes to im2col + BLAS
# instead (conv.py): ResNet50's 7x7 conv5 layers at batch 1 make 4 tiles, so each of the 36 products
# is 4 rows against a filter plane, and the transformed filter read is 4x the kernel (512 channels:
# 4.8 ms against 2.9 through im2col with the product split by columns, 6.8 against 4.3 on one
# thread). At 16 tiles (14x14 at batch 1) the two measured even (256 channels) or Winograd ahead (512).
FEW_TILES = 8


def splits_tile_rows(n, out_hw, ch, f):
    """True when conv3x3 on several threads hands each thread runs of tile rows (_conv3x3_threaded):
    the rows are small (MIN_THREAD_ROWS of them within THREAD_BYTES) and more than one."""
    tiles_h, tiles_w = -(-out_hw[0] // 4), -(-out_hw[1] // 4)
    return 36 * tiles_w * (ch + f) * 4 * MIN_THREAD_ROWS <= THREAD_BYTES and n * tiles_h > 1


def chunk_rows(tiles_w, ch, f):
    """Tile rows of one of conv3x3's chunks on one thread (see CHUNK_BYTES and MIN_TILES)."""
    return max(CHUNK_BYTES // (36 * tiles_w * (ch + f) * 4), -(-MIN_TILES // tiles_w))


def few_tiles(n, oh, ow, channels=0, filters=0, kept=True):
    """True when a forward conv of batch n and oh x ow outputs has fewer than FEW_TILES Winograd tiles;
    or, when its products go through winograd_products and its filter is neither ``kept`` (given
    transformed) nor small enough to be (cached_filter_wanted), fewer than its MIN_TILES_UNKEPT."""
    tiles = n * -(-oh // 4) * -(-ow // 4)
    if not kept and not cached_filter_wanted(channels, filters) and winograd_products.preferred(channels, filters):
        return tiles < max(FEW_TILES, winograd_products.MIN_TILES_UNKEPT)
    return tiles < FEW_TILES


def takes(x_shape, w_shape, strides, dilation, out_hw, kept):
    """Whether a forward conv goes through Winograd: applicable, and not few_tiles (``kept``: its
    transformed filter is given)."""
    return applicable(x_shape, w_shape, strides, dilation) and not few_tiles(
        x_shape[0], *out_hw, *w_shape[2:], kept)


# The transforms' constants as float32: a float64 literal would turn each float32 sum into a
# float64 one (numba follows numpy's promotion), half as many lanes per vector plus conversions.
F2, F4, F5, F8, ZERO = (np.float32(v) for v in (2, 4, 5, 8, 0))


def applicable(x_shape, w_shape, strides, dilation, out_hw=None, small_outputs=True):
    """True when Winograd is valid (3x3, stride 1, dilation 1) and faster than the direct path.

    Measured (scripts/bench_engine.py --layers): with few channels the product is too thin for
    BLAS to gain from the 4x flop cut, and below ~8x8 outputs the partial tiles waste it (down to
    6x6 on wide layers when small_outputs: the forward).
    """
    if w_shape[:2] != (3, 3) or tuple(strides) != (1, 1) or tuple(dilation) != (1, 1):
        return False
    oh, ow = out_hw if out_hw is not None else x_shape[1:3]
    channels = min(w_shape[2], w_shape[3])
    if channels < MIN_CHANNELS:
        return False
    return min(oh, ow) >= MIN_OUT or (small_outputs and min(oh, ow) >= SMALL_OUT and channels >= SMALL_OUT_CHANNELS)


def input_transform(x, tile_rows, tr0, tiles_h, tiles_w, pad_top, pad_left, v):
    """v[k, t, c] = (B^T d B)[k // 6, k % 6] for the 6x6 input tile of the chunk's t-th output tile,
    the chunk being tile rows tr0 .. tr0 + tile_rows (its rows shared by the threads).

    Tile rows are numbered image-major over the batch: row tr0 + job is image (tr0 + job) // tiles_h.
    """
    conv_chunks.by_jobs(tile_rows, lambda j0, j1: _input_tiles(x, j0, j1, tr0, tiles_h, tiles_w, pad_top, pad_left, v))


def output_transform(m, tile_rows, tr0, tiles_h, tiles_w, b, has_bias, relu, y, lo=0, pool2=False):
    """y[4x4 block of tile t, channels lo:lo + F] = A^T m[:, t] A (+ b, ReLU), cropped at the
    bottom/right edges, for the chunk of tile rows tr0 .. tr0 + tile_rows (shared by the threads).
    pool2: y is the 2x2 stride-2 ('valid') max pool of that instead, each block's 2x2 pooled values
    taken while it is in registers (tiles start at multiples of 4)."""
    conv_chunks.by_jobs(tile_rows, lambda j0, j1: _output_tiles(m, j0, j1, tr0, tiles_h, tiles_w, b, has_bias, relu,
                                                                 y, lo, pool2))


# The transforms are serial kernels over a range of the chunk's tile rows (jobs j0 .. j1), shared
# by tlkit's threads (conv_chunks.by_jobs): as numba parallel loops they compiled in ~4x the time
# (a first run's largest compile), at the same speed.
@serial_kernel
def _input_tiles(x, j0, j1, tr0, tiles_h, tiles_w, pad_top, pad_left, v):
    _, h, w, ch = x.shape
    for job in range(j0, j1):
        img = (tr0 + job) // tiles_h
        tr = (tr0 + job) % tiles_h
        d = np.zeros((6, 6, ch), np.float32)
        s = np.empty((6, 6, ch), np.float32)
        for tc in range(tiles_w):
            t = job * tiles_w + tc
            # gather the 6x6 tile, zeros outside the image (padding)
            for i in range(6):
                ih = tr * 4 + i - pad_top
                for j in range(6):
                    iw = tc * 4 + j - pad_left
                    if 0 <= ih < h and 0 <= iw < w:
                        for c in range(ch):
                            d[i, j, c] = x[img, ih, iw, c]
                    else:
                        for c in range(ch):
                            d[i, j, c] = ZERO
            # s = B^T d (along rows), then v = s B (along columns)
            for j in range(6):
                for c in range(ch):
                    d0 = d[0, j, c]; d1 = d[1, j, c]; d2 = d[2, j, c]
                    d3 = d[3, j, c]; d4 = d[4, j, c]; d5 = d[5, j, c]
                    s[0, j, c] = F4 * d0 - F5 * d2 + d4
                    s[1, j, c] = -F4 * (d1 + d2) + d3 + d4
                    s[2, j, c] = F4 * (d1 - d2) - d3 + d4
                    s[3, j, c] = F2 * (d3 - d1) - d2 + d4
                    s[4, j, c] = F2 * (d1 - d3) - d2 + d4
                    s[5, j, c] = F4 * d1 - F5 * d3 + d5
            for i in range(6):
                for c in range(ch):
                    e0 = s[i, 0, c]; e1 = s[i, 1, c]; e2 = s[i, 2, c]
                    e3 = s[i, 3, c]; e4 = s[i, 4, c]; e5 = s[i, 5, c]
                    v[i * 6 + 0, t, c] = F4 * e0 - F5 * e2 + e4
                    v[i * 6 + 1, t, c] = -F4 * (e1 + e2) + e3 + e4
                    v[i * 6 + 2, t, c] = F4 * (e1 - e2) - e3 + e4
                    v[i * 6 + 3, t, c] = F2 * (e3 - e1) - e2 + e4
                    v[i * 6 + 4, t, c] = F2 * (e1 - e3) - e2 + e4
                    v[i * 6 + 5, t, c] = F4 * e1 - F5 * e3 + e5


@serial_kernel
def _output_tiles(m, j0, j1, tr0, tiles_h, tiles_w, b, has_bias, relu, y, lo, pool2):
    _, oh, ow, _ = y.shape
    f = m.shape[2]
    for job in range(j0, j1):
        img = (tr0 + job) // tiles_h
        tr = (tr0 + job) % tiles_h
        s = np.empty((4, 6, f), np.float32)
        o = np.empty((4, 4, f), np.float32)
        for tc in range(tiles_w):
            t = job * tiles_w + tc
            for j in range(6):  # s = A^T m (along rows)
                for c in range(f):
                    m0 = m[j, t, c]; m1 = m[6 + j, t, c]; m2 = m[12 + j, t, c]
                    m3 = m[18 + j, t, c]; m4 = m[24 + j, t, c]; m5 = m[30 + j, t, c]
                    a = m1 + m2
                    d = m1 - m2
                    p = m3 + m4
                    q = m3 - m4
                    s[0, j, c] = m0 + a + p
                    s[1, j, c] = d + F2 * q
                    s[2, j, c] = a + F4 * p
                    s[3, j, c] = d + F8 * q + m5
            for i in range(4):  # o = s A (along columns), + bias, ReLU
                for c in range(f):
                    e0 = s[i, 0, c]; e1 = s[i, 1, c]; e2 = s[i, 2, c]
                    e3 = s[i, 3, c]; e4 = s[i, 4, c]; e5 = s[i, 5, c]
                    a = e1 + e2
                    d = e1 - e2
                    p = e3 + e4
                    q = e3 - e4
                    bias = b[c] if has_bias else ZERO
                    r0 = e0 + a + p + bias
                    r1 = d + F2 * q + bias
                    r2 = a + F4 * p + bias
                    r3 = d + F8 * q + e5 + bias
                    if relu:
                        r0 = max(r0, ZERO); r1 = max(r1, ZERO); r2 = max(r2, ZERO); r3 = max(r3, ZERO)
                    o[i, 0, c] = r0; o[i, 1, c] = r1; o[i, 2, c] = r2; o[i, 3, c] = r3
            if pool2:  # y is (N, conv_h // 2, conv_w // 2, .)
                for i in range(min(2, oh - tr * 2)):
                    for j in range(min(2, ow - tc * 2)):
                        dst = y[img, tr * 2 + i, tc * 2 + j, lo:lo + f]
                        for c in range(f):
                            dst[c] = max(max(o[2 * i, 2 * j, c], o[2 * i, 2 * j + 1, c]),
                                         max(o[2 * i + 1, 2 * j, c], o[2 * i + 1, 2 * j + 1, c]))
                continue
            for i in range(min(4, oh - tr * 4)):
                for j in range(min(4, ow - tc * 4)):
                    dst = y[img, tr * 4 + i, tc * 4 + j, lo:lo + f]  # contiguous: vectorizes
                    for c in range(f):
                        dst[c] = o[i, j, c]


def compile_last_first():
    """Compile (or load from numba's cache) the forward's three kernels in the reverse of the order
    conv3x3 calls them, one tiny call each, with the argument types conv3x3 passes: a second
    process running a 3x3 conv meanwhile compiles the filter and input transforms instead of
    waiting for this one (the output transform alone takes about as long as those two)."""
    f32 = np.float32
    output_transform(np.zeros((36, 1, 1), f32), 1, 0, 1, 1, np.zeros(1, f32), False, False,
                     np.zeros((1, 4, 4, 1), f32), 0, False)
    input_transform(np.zeros((1, 4, 4, 1), f32), 1, 0, 1, 1, 1, 1, np.zeros((36, 1, 1), f32))
    filter_transform(np.zeros((3, 3, 1, 1), f32), 0, np.zeros((36, 1, 1), f32))


def conv3x3(x, w, u, b, pad_top, pad_left, out_hw, relu, out=None, lo=0, pool2=False):
    """y (N, OH, OW, F): 3x3 stride-1 correlation of x (N, H, W, C) with w, padded by (pad_top,
    pad_left) before and zeros as needed after; u = transform_filter(w) if already known.
    out: optional C-contiguous (N, OH, OW, >= lo + F) array; y goes to its channels [lo, lo + F).
    pool2: return the 2x2 stride-2 'valid' max pool of y instead, (N, OH // 2, OW // 2, F) (out
    then has that shape), without ever holding y. Without u, a large filter is transformed a group of
    its planes at a time in each chunk (winograd_filters.FILTER_BLOCK_BYTES), never whole."""
    n, _, _, ch = x.shape
    packed = winograd_products.preferred(ch, w.shape[3] if u is None else u.shape[2])
    if u is None and cached_filter_wanted(ch, w.shape[3]) and not packed:
        u = transform_filter(w)
    if u is not None and u.shape[:2] != (36, ch):
        raise ValueError(f"wino_filter has shape {u.shape}; for this input it must be (36, {ch}, filters). "
                         "Recompute it with winograd_transform_filter(kernel).")
    f = w.shape[3] if u is None else u.shape[2]
    oh, ow = out_hw
    tiles_h, tiles_w = -(-oh // 4), -(-ow // 4)
    y_shape = (n, oh // 2, ow // 2, f) if pool2 else (n, oh, ow, f)
    y = np.empty(y_shape, np.float32) if out is None else out
    has_bias = b is not None
    bias = b if has_bias else np.zeros(f, np.float32)
    # A chunk is a run of tile rows, possibly spanning images (rows are numbered image-major).
    total_rows = n * tiles_h
    threaded = THREADED
    if threaded is None:
        threaded = ((splits_tile_rows(n, out_hw, ch, f) or (packed and winograd_products.per_thread(ch, f)))
                    and threads.num_threads() > 1 and threads.chunks_can_run_numba())
    if threaded and threads.by_output_channels(36 * ch * f, 36 * n * tiles_h * tiles_w * ch, f):
        _conv3x3_columns(x, transform_filter(w) if u is None else u, bias, has_bias, pad_top, pad_left, tiles_h,
                         tiles_w, relu, y, lo, pool2)
        return y[..., lo:lo + f]
    planes = None  # the packed transformed filter when whole (kept if u is), straight into panels from w
    if packed and (threaded or u is not None or cached_filter_wanted(ch, f)):
        planes = winograd_products.planes_for(None if u is not None else np.ascontiguousarray(w, np.float32), u)
    if threaded:
        _conv3x3_threaded(x, planes or (transform_filter(w) if u is None else u), bias, has_bias, pad_top, pad_left,
                          tiles_h, tiles_w, relu, y, lo, pool2)
        return y[..., lo:lo + f]
    rows_per_chunk = min(chunk_rows(tiles_w, ch, f), total_rows)
    v = np.empty((36, rows_per_chunk * tiles_w, ch), np.float32)
    if u is None and planes is None:
        _chunks_by_filter_groups(x, np.ascontiguousarray(w, dtype=np.float32), v, rows_per_chunk, bias, has_bias,
                                 pad_top, pad_left, tiles_h, tiles_w, relu, y, lo, pool2, packed)
        return y[..., lo:lo + f]
    m = np.empty((36, rows_per_chunk * tiles_w, f), np.float32)
    for r0 in range(0, total_rows, rows_per_chunk):
        rows = min(rows_per_chunk, total_rows - r0)
        t = rows * tiles_w
        input_transform(x, rows, r0, tiles_h, tiles_w, pad_top, pad_left, v)
        if packed:
            winograd_products.split_products(v, t, planes, m)
        else:
            matmul(v[:, :t], u, m[:, :t])
        output_transform(m, rows, r0, tiles_h, tiles_w, bias, has_bias, relu, y, lo, pool2)
    return y[..., lo:lo + f]


def conv3x3_one_thread(x, u, bias, has_bias, pad_top, pad_left, tiles_h, tiles_w, relu, y, lo, v, m):
    """conv3x3 on the calling thread alone, chunk by chunk of v.shape[1] // tiles_w tile rows, into scratch
    the caller keeps: ``v`` (36, chunk tiles, C) and ``m`` (36, chunk tiles, F) float32, ``u`` the
    transformed filter, ``bias`` (F,) float32, ``y`` C-contiguous (N, OH, OW, >= lo + F). No checks:
    for steps compiled once per shape (engine/conv_steps.py), which keep their arrays and route."""
    total, per = x.shape[0] * tiles_h, v.shape[1] // tiles_w
    for r0 in range(0, total, per):
        rows = min(per, total - r0)
        t = rows * tiles_w
        _input_tiles(x, 0, rows, r0, tiles_h, tiles_w, pad_top, pad_left, v)
        threads.product(v[:, :t], u, m[:, :t])
        _output_tiles(m, 0, rows, r0, tiles_h, tiles_w, bias, has_bias, relu, y, lo, False)


def _chunks_by_filter_groups(x, w, v, rows_per_chunk, bias, has_bias, pad_top, pad_left, tiles_h, tiles_w, relu, y,
                             lo, pool2, packed=False):
    """conv3x3's chunk loop without a transformed filter: per chunk, each group of the transform's planes
    (winograd_filters.rows_per_group) is computed into one reused scratch just before its products
    (packed: into gemm_blocks' panels, the products through winograd_products)."""
    ch, f = w.shape[2], w.shape[3]
    rows = winograd_filters.rows_per_group(ch, f)
    total_rows = x.shape[0] * tiles_h
    group = winograd_products.new_planes(6 * rows, ch, f) if packed else None
    size = group.panels.size if packed else 6 * rows * ch * f
    scratch = workspace.take((max(winograd_filters.FILTER_BLOCK_BYTES // 4, size),), np.float32)
    u = scratch[:size].reshape(group.panels.shape if packed else (6 * rows, ch, f))
    if packed:
        group.panels = u
    m = np.empty((36, v.shape[1], f), np.float32)
    for r0 in range(0, total_rows, rows_per_chunk):
        tile_rows = min(rows_per_chunk, total_rows - r0)
        t = tile_rows * tiles_w
        input_transform(x, tile_rows, r0, tiles_h, tiles_w, pad_top, pad_left, v)
        for i0 in range(0, 6, rows):
            if packed:
                winograd_products.transform(w, i0, group)
                winograd_products.split_products(v, t, group, m, 6 * i0)
                continue
            filter_transform(w, i0, u)
            planes = slice(6 * i0, 6 * (i0 + rows))
            matmul(v[planes, :t], u, m[planes, :t])
        output_transform(m, tile_rows, r0, tiles_h, tiles_w, bias, has_bias, relu, y, lo, pool2)
    del u, group
    workspace.give_back([scratch])


def _conv3x3_threaded(x, u, bias, has_bias, pad_top, pad_left, tiles_h, tiles_w, relu, y, lo, pool2):
    """conv3x3's chunks, each run whole by one thread (transforms, 36 products, write-back); u: the
    transformed filter, or its winograd_products.Planes."""
    packed = isinstance(u, winograd_products.Planes)
    ch, f = (u.panels.shape[2], u.f) if packed else (u.shape[1], u.shape[2])
    total_rows = x.shape[0] * tiles_h
    parts = max(threads.num_threads(), 1)
    per = max(1, min(THREAD_BYTES // (36 * tiles_w * (ch + f) * 4),
                     -(-total_rows // (parts * threads.chunks_per_thread()))))
    scratch = {}

    def chunk(slot, r0, r1):
        if slot not in scratch:
            scratch[slot] = (np.empty((36, per * tiles_w, ch), np.float32), np.empty((36, per * tiles_w, f), np.float32))
        v, m = scratch[slot]
        t = (r1 - r0) * tiles_w
        input_transform(x, r1 - r0, r0, tiles_h, tiles_w, pad_top, pad_left, v)
        if packed:
            winograd_products.products(v, t, u, m)
        else:
            threads.product(v[:, :t], u, m[:, :t])
        output_transform(m, r1 - r0, r0, tiles_h, tiles_w, bias, has_bias, relu, y, lo, pool2)

    threads.limit_blas()
    if worker_pool.serves_jobs() and not packed:
        chunk.native = jobs.winograd_poster((_input_tiles, _output_tiles), x, u, bias, has_bias, relu, y, lo, pool2,
                                            tiles_h, tiles_w, pad_top, pad_left)
    threads.run_chunks(list(range(0, total_rows, per)) + [total_rows], chunk, parts)


def _conv3x3_columns(x, u, bias, has_bias, pad_top, pad_left, tiles_h, tiles_w, relu, y, lo, pool2):
    """conv3x3 with the output channels shared by the threads (threads.by_output_channels): the input
    transformed once, then each thread multiplies by (reads) its block of the transformed filter only."""
    ch, f = u.shape[1], u.shape[2]
    total_rows = x.shape[0] * tiles_h
    v = np.empty((36, total_rows * tiles_w, ch), np.float32)
    before = threads.num_threads()
    threads.set_numba_threads(1)  # a few tiles: a numba parallel region would cost more than the pass
    try:
        input_transform(x, total_rows, 0, tiles_h, tiles_w, pad_top, pad_left, v)
    finally:
        threads.set_numba_threads(before)

    def block(slot, c0, c1):
        m = np.empty((36, v.shape[1], c1 - c0), np.float32)
        threads.product(v, u[:, :, c0:c1], m)
        output_transform(m, total_rows, 0, tiles_h, tiles_w, bias[c0:c1], has_bias, relu, y, lo + c0, pool2)

    threads.limit_blas()
    if worker_pool.serves_jobs():
        block.native = jobs.winograd_poster((_input_tiles, _output_tiles), x, u, bias, has_bias, relu, y, lo, pool2,
                                            tiles_h, tiles_w, pad_top, pad_left, v)
    threads.run_chunks(threads.column_blocks(f, before), block, before)
