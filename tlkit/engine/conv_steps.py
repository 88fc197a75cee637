"""A frozen Conv2D's compiled step that calls its kernels straight (compiled_steps.py).

Why: SqueezeNet at batch 1 is 24 small convolutions (0.03-0.4 ms each) that run on one thread
(small_steps.py); each went through Conv2D.call -> conv2d_forward's argument checks and route choice ->
the route's chunking, and a Winograd conv allocated its transformed input and products (up to 2.3 MB)
at every call (SqueezeNet's 55x55x16 -> 64 on one thread: 0.41 ms through conv2d_forward, 0.32 ms as the
three kernel calls on kept arrays). With everything the input shape fixes decided once, a step is the
kernel calls alone:
- a 1x1 stride-1 conv through gemm_blocks' micro-kernel on the layer's kept packing
  (``Conv2D._packed_pointwise``), bias and ReLU fused, into its output or concatenation slice;
- a 3x3 stride-1 conv through Winograd chunk by chunk (``winograd.conv3x3_one_thread``) on the layer's
  kept transformed filter, into scratch shared by the program's direct steps (they run one after another);
- a conv with the max pool fused after it that conv_pool_bands runs (SqueezeNet's conv1 + pool1) with its
  packing and its bands' scratch kept (its bands still split over the threads unless the step runs alone).
Anything else, or a call where something changed (the layer unfrozen, a weight replaced or assigned, the
activation, the input's shape or layout, a step that no longer runs alone), runs the generic step.

    scratch = Scratch()                                   # one per program
    step = direct_step(plan, node, x_index, y_index, x, out, pool, scratch, generic)   # None: not taken
"""
import math

import numpy as np

from tlkit.engine import small_steps
from tlkit.utils import threads

# False: every conv step is the generic one (tests and A/B scripts take both sides).
ENABLED = True
# The largest Winograd scratch (one chunk's transformed input + products, winograd.chunk_rows) a direct step
# keeps: convs whose chunks are larger keep conv3x3's own route.
MAX_SCRATCH_BYTES = 8 << 20


class Scratch:
    """A flat float32 buffer the direct steps of one program share: ``take(shapes)`` views of its start,
    one after the other (made again only when a later step's ``reserve`` grew the buffer)."""

    def __init__(self):
        self.flat = np.empty(0, np.float32)
        self._views = {}

    def reserve(self, count):
        if self.flat.size < count:
            self.flat = np.empty(count, np.float32)

    def take(self, shapes):
        kept = self._views.get(shapes)
        if kept is None or kept[0] is not self.flat:
            views, at = [], 0
            for shape in shapes:
                size = math.prod(shape)
                views.append(self.flat[at:at + size].reshape(shape))
                at += size
            kept = self._views[shapes] = (self.flat, views)
        return kept[1]


def direct_step(plan, node, x_index, y_index, x, out, pool, scratch, generic):
    """A step computing ``node`` (a Conv2D, no batch norm or epilogue; ``pool`` the MaxPooling2D fused with it
    or None) from vals[x_index] into ``out`` as compiled now, or None when no direct route applies;
    ``generic(vals)`` runs the layer's call."""
    layer = node.layer
    if (not ENABLED or layer.trainable or layer.groups != 1 or layer.activation not in ("relu", "linear")
            or "_activation_function" in layer.__dict__ or (pool is None and tuple(layer.strides) != (1, 1))
            or tuple(layer.dilation_rate) != (1, 1) or not isinstance(x, np.ndarray) or x.ndim != 4
            or x.dtype != np.float32 or not x.flags.c_contiguous or not isinstance(out, np.ndarray)):
        return None
    whole, lo = _channels_of(out)
    if whole is None:
        return None
    shape, relu = x.shape, layer.activation == "relu"

    def prepare():
        if pool is not None:
            return _pooled(layer, shape, out, relu, pool)
        return _compute(layer, shape, out, whole, lo, relu, scratch)

    state = [_weights(layer), prepare()]
    if state[1] is None:
        return None
    threads.limit_blas()

    def step(vals):
        x = vals[x_index]
        alone = threads.num_threads() > 1 and small_steps.runs_alone(plan.alone, node, (shape,))
        if (layer.trainable or layer.activation != ("relu" if relu else "linear") or "_activation_function" in layer.__dict__
                or x.shape != shape or not x.flags.c_contiguous or x.dtype != np.float32
                or (pool is None and threads.num_threads() > 1 and not alone)):
            generic(vals)
            return
        if not _unchanged(layer, state[0]):  # a weight assigned or replaced: its packing or filter again
            state[:] = [_weights(layer), prepare()]
        if state[1] is None:
            generic(vals)
            return
        if alone and pool is not None:  # the bands of a pooled conv split over the threads unless it runs alone
            small_steps.call_alone(state[1], x, {})
        else:
            state[1](x)
        vals[y_index] = out
    return step


def _weights(layer):
    """[(Variable, its array, its version)] of the kernel and the bias, as a step computes with them."""
    return [(v, v.value, v.version) for v in (layer.kernel, layer.bias) if v is not None]


def _unchanged(layer, weights):
    """Whether the layer's kernel and bias are still ``weights`` (_weights): the same Variables holding the same
    arrays at the same versions (``assign`` bumps it)."""
    kernel, bias = layer.kernel, layer.bias
    (k, k_value, k_version), rest = weights[0], weights[1:]
    if kernel is not k or kernel.value is not k_value or kernel.version != k_version:
        return False
    if bias is None or not rest:
        return bias is None and not rest
    b, b_value, b_version = rest[0]
    return bias is b and bias.value is b_value and bias.version == b_version


def _channels_of(out):
    from tlkit.engine.kernels import conv
    return conv._channels_of(out)


def _compute(layer, shape, out, whole, lo, relu, scratch):
    """compute(x) writing the conv of x (``shape``) into ``out`` (whole[..., lo:lo + F]), or None: a 1x1 or
    a 3x3 conv at stride 1."""
    from tlkit.engine.kernels import conv, gemm_blocks, winograd  # numba loads at the first kernel

    kernel = layer.kernel.value
    n, h, w, c = shape
    f = kernel.shape[3]
    if kernel.ndim != 4 or kernel.shape[2] != c:
        return None
    low, high = np.float32(0 if relu else -np.inf), np.float32(np.inf)
    if layer.kernel_size == (1, 1):
        packed = layer._packed_pointwise(conv)
        if packed is None or out.shape != (n, h, w, f):
            return None
        y2 = whole.reshape(-1, whole.shape[3])[:, lo:lo + f]
        run_product, no_residual = gemm_blocks.driver(packed), np.zeros((1, 1), np.float32)

        def compute(x):
            run_product(x.reshape(-1, c), packed.panels, packed.bias, y2, no_residual, False, low, high)
        return compute
    if layer.kernel_size != (3, 3):
        return None
    g = conv._geometry(shape, (3, 3), (1, 1), layer.padding, (1, 1), "conv_steps")
    tiles_h, tiles_w = -(-g.oh // 4), -(-g.ow // 4)
    tiles = min(winograd.chunk_rows(tiles_w, c, f), n * tiles_h) * tiles_w  # of one chunk, as conv3x3 cuts them
    if (out.shape != (n, g.oh, g.ow, f) or not winograd.applicable(shape, kernel.shape, (1, 1), (1, 1))
            or winograd.few_tiles(n, g.oh, g.ow) or 36 * tiles * (c + f) * 4 > MAX_SCRATCH_BYTES):
        return None
    u = layer._winograd_filter(conv)
    if u is None:
        return None
    has_bias = layer.bias is not None
    bias = layer.bias.value if has_bias else np.zeros(f, np.float32)
    scratch.reserve(36 * tiles * (c + f))
    shapes = ((36, tiles, c), (36, tiles, f))

    def compute(x):
        v, m = scratch.take(shapes)
        winograd.conv3x3_one_thread(x, u, bias, has_bias, g.pad_top, g.pad_left, tiles_h, tiles_w, relu, whole, lo, v,
                                    m)
    return compute


def _pooled(layer, shape, out, relu, pool):
    """compute(x) writing the conv of x (``shape``) and the max pool after it into ``out`` through
    conv_pool_bands (when conv2d_maxpool_forward would take that route), its packing and band scratch kept
    (SqueezeNet's conv1 + pool1); or None."""
    from tlkit.engine.kernels import conv, conv_pool_bands, gemm_blocks
    from tlkit.engine.kernels.geometry import conv_output_shape, padding_mode, pads, pair

    kernel, fn = layer.kernel.value, "conv_steps"
    n, _, _, c = shape
    if kernel.ndim != 4 or kernel.shape[2] != c or not out.flags.c_contiguous:
        return None
    g = conv._geometry(shape, kernel.shape[:2], layer.strides, layer.padding, (1, 1), fn)
    size = pair(pool.pool_size, "pool_size", fn)
    strides = size if pool.strides is None else pair(pool.strides, "pool_strides", fn)
    padding = padding_mode(pool.padding, "pool_padding", fn)
    if (conv._winograd_pools(shape, kernel.shape, g.strides, g.dilation, size, strides, padding)
            or not conv_pool_bands.takes(kernel.shape, g.dilation)
            or (padding == "valid" and (size[0] > g.oh or size[1] > g.ow))):
        return None
    f = kernel.shape[3]
    if out.shape != (n, *conv_output_shape((g.oh, g.ow), size, strides, padding), f):
        return None
    wmat = np.ascontiguousarray(kernel.reshape(-1, f))
    has_bias = layer.bias is not None
    bias = layer.bias.value if has_bias else np.zeros(f, np.float32)
    pool_pads = pads(g.oh, size[0], strides[0], padding)[0], pads(g.ow, size[1], strides[1], padding)[0]
    packed = gemm_blocks.pack(wmat) if conv_pool_bands.PRODUCTS and gemm_blocks.worth_it(*wmat.shape) else None
    bands = {}  # each thread slot's patch and conv rows, kept

    def compute(x):
        conv_pool_bands.conv_maxpool_bands(x, wmat, bias, has_bias, relu, g.window, g.pad_top, g.pad_left,
                                           (g.oh, g.ow), size, strides, pool_pads, out, packed, bands)
    return compute
