"""Which inference steps run on the calling thread alone, every kernel and product inside them.

Why: tlkit's worker threads block while idle (never spin: see tlkit/utils/threads.py), so each
hand-off to a second thread costs a wake-up and a meeting, tens of microseconds or more. A step
of a few MFLOPs (most of MobileNetV2's and EfficientNet-Lite0's layers at batch 1) or a small
copy (padding, pooling) takes about as long as that on one core, yet each route splits its work
by rules of its own, from the layer's shape alone. Deciding per step of the inference plan keeps
one rule for every route: a step below the bars below sets tlkit's thread count to 1 for its call
(``threads.set_numba_threads``, which every route reads through ``threads.num_threads``) and
restores it after. Larger steps (ResNet50's convolutions, any of these layers at batch 32) keep
every thread. The bars come from an interleaved A/B of whole forwards (BENCHMARKS.md, "Speed against
ONNX Runtime"): 16 MFLOPs did better than 8, 32 or 64.
One route also runs alone above that bar: a 3x3 conv that Winograd would cut into runs of tile rows,
one per thread (``winograd.splits_tile_rows``), over fewer than WINOGRAD_ALONE_TILES tiles and under
WINOGRAD_ALONE_FLOPS (SqueezeNet's 3x3 convs at batch 1, 28-56 MFLOPs): each thread's share is a few
tile rows, whose transforms and 36 thin products cost more per tile, and the two threads slowed each
other, so the layer took longer on two threads than on one (27x27x32 -> 128: 0.25 ms on one, 0.5-0.65
on two).

During an inference forward on images the worker polls between steps (``session``, a
``worker_pool.session``): no wake-up to pay, so the bars drop to SESSION_STEP_FLOPS /
SESSION_STEP_ELEMENTS and Winograd's tile-row route keeps its threads (BENCHMARKS.md, "Batch 1: both
threads on every step").

    with session(arrays, training):                      # around one forward of the graph
    if runs_alone(plan.alone, node, input_shapes):      # cached per node, input shapes and session
        result = call_alone(node.layer, inputs, kwargs)
"""
import contextlib
import math

from tlkit.engine.tape import active_tape
from tlkit.utils import session_trials, threads, worker_pool

# A step with weights (a convolution, depthwise or separable) runs alone below this many FLOPs:
# twice its multiply-adds, the output pixels times the sizes of its 4-D kernels.
SMALL_STEP_FLOPS = 16_000_000
# A step without 4-D kernels (padding, pooling, an Add, a ReLU) only moves memory: alone below
# this many output elements (4 MB of float32).
SMALL_STEP_ELEMENTS = 1 << 20
# A 3x3 conv through Winograd's per-thread tile rows runs alone below this many tiles (4x4 output
# blocks over the batch) and WINOGRAD_ALONE_FLOPS (SqueezeNet's: 28-56 MFLOPs; ResNet50's 28x28 ones,
# 231 MFLOPs, were not measured alone, so they keep their threads).
WINOGRAD_ALONE_TILES = 256
WINOGRAD_ALONE_FLOPS = 64_000_000
# During a session (``session``: the worker polls between steps, no wake-up to pay) the bars are
# these instead, and Winograd's tile-row route keeps its threads.
SESSION_STEP_FLOPS = 2_000_000
SESSION_STEP_ELEMENTS = 1 << 16
# Sessions are opened for forwards of at most this many images (measured at batch 1).
SESSION_IMAGES = 1
# False turns the rule off (tests take both sides; the A/B scripts compare them).
ENABLED = True
# Entries a plan's per-shape cache holds at most (a model fed ever new image sizes starts it over).
MAX_CACHED_SHAPES = 4096


def flops_bar():
    """The FLOPs under which a step with weights runs alone now (at most SESSION_STEP_FLOPS in a session)."""
    return min(SMALL_STEP_FLOPS, SESSION_STEP_FLOPS) if worker_pool.awake() else SMALL_STEP_FLOPS


def step_work(layer, output_shape):
    """(FLOPs, output elements) of one call of ``layer`` producing an NHWC ``output_shape``."""
    elements = math.prod(int(d) for d in output_shape)
    pixels = elements // max(int(output_shape[-1]), 1)
    # a 4-D kernel (kh, kw, in, out): its size is the multiply-adds per output pixel
    multiply_adds = sum(math.prod(int(d) for d in w.shape) for w in layer.weights if len(w.shape) == 4)
    return 2 * pixels * multiply_adds, elements


def runs_alone(cache, node, input_shapes):
    """Whether ``node``'s inference call on inputs of ``input_shapes`` (a tuple of shape tuples)
    runs on the calling thread alone; ``cache`` (a dict the plan keeps) holds the answers."""
    if not ENABLED:
        return False
    awake = worker_pool.awake()
    key = (id(node), input_shapes, awake)
    alone = cache.get(key)
    if alone is None:
        alone = remember(cache, key, _decide(node, input_shapes, awake))
    return alone


def remember(cache, key, value):
    """cache[key] = value in one of the plan's per-shape caches, kept under MAX_CACHED_SHAPES; value."""
    if len(cache) >= MAX_CACHED_SHAPES:
        cache.clear()
    cache[key] = value
    return value


def _decide(node, input_shapes, awake=False):
    try:
        shape = node.layer.compute_output_shape(input_shapes if node.input_structure else input_shapes[0])
    except Exception:  # noqa: BLE001 - a shape the layer cannot map: let its call raise, on every thread
        return False
    if not isinstance(shape, tuple) or len(shape) != 4 or any(d is None for d in shape):
        return False  # only image steps (NHWC): others keep their own thread rules
    flops, elements = step_work(node.layer, shape)
    if awake:
        return flops < flops_bar() if flops else elements < min(SMALL_STEP_ELEMENTS, SESSION_STEP_ELEMENTS)
    if flops:
        return flops < SMALL_STEP_FLOPS or (flops < WINOGRAD_ALONE_FLOPS
                                            and few_winograd_tile_rows(node.layer, input_shapes[0], shape))
    return elements < SMALL_STEP_ELEMENTS


def few_winograd_tile_rows(layer, input_shape, output_shape):
    """Whether ``layer`` is a 3x3 conv that Winograd cuts into per-thread tile rows, over fewer than
    WINOGRAD_ALONE_TILES tiles."""
    from tlkit.engine.kernels import winograd  # numba loads at the first kernel, not at tlkit's import

    kernel = getattr(layer, "kernel", None)
    if (kernel is None or getattr(layer, "groups", 1) != 1 or len(kernel.shape) != 4 or len(input_shape) != 4
            or None in input_shape):
        return False
    n, oh, ow, f = (int(d) for d in output_shape)
    w_shape = tuple(int(d) for d in kernel.shape)
    strides, dilation = getattr(layer, "strides", None), getattr(layer, "dilation_rate", None)
    if strides is None or dilation is None or not winograd.applicable(input_shape, w_shape, strides, dilation, (oh, ow)):
        return False
    tiles = n * -(-oh // 4) * -(-ow // 4)
    return (not winograd.few_tiles(n, oh, ow) and tiles < WINOGRAD_ALONE_TILES
            and winograd.splits_tile_rows(n, (oh, ow), w_shape[2], f))


def call_alone(layer, inputs, kwargs):
    """``layer(inputs, **kwargs)`` with tlkit's thread count 1 on this thread, restored after."""
    before = threads.num_threads()
    if before <= 1:  # nothing to change (a pool thread's group, NUMBA_NUM_THREADS=1)
        return layer(inputs, **kwargs)
    threads.set_numba_threads(1)
    try:
        return layer(inputs, **kwargs)
    finally:
        threads.set_numba_threads(before)


def session(arrays, training, graph=None):
    """The context of one forward of a layer graph (``graph``: any key naming it) on ``arrays``: when
    ``worker_pool.SESSIONS`` is on, a worker session (``worker_pool.session``) for an inference forward on up
    to SESSION_IMAGES images with more than one thread, so that every step but the smallest splits over
    threads that are awake, while the other processes leave those cores free and sessions are measured
    faster for this graph (``session_trials.forward``); otherwise nothing (larger batches split each step
    into chunks enough)."""
    if (training or not ENABLED or not arrays or getattr(arrays[0], "ndim", 0) != 4
            or arrays[0].shape[0] > SESSION_IMAGES or active_tape() is not None or not worker_pool.SESSIONS):
        return contextlib.nullcontext()
    return session_trials.forward((graph, arrays[0].shape), threads.num_threads(), worker_pool.session)
