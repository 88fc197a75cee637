"""Inference over a batch of small images as groups of images, each group run through the whole
layer graph by one thread (tlkit.utils.threads.run_chunks), its kernels and products on that
thread alone.

Why: when every activation of one image is small (SqueezeNet at 224: at most 1.5 MB per image),
a group's activations stay in the core's caches from one layer to the next, where the whole
batch's go through memory at every layer (50 MB per fire module at batch 32: its 1x1 convs are
memory bound); and the threads meet once per group instead of once per layer. Graphs with
larger activations (VGG16, the mobile bases and ResNet50 at 224) keep the layer-by-layer route:
a group would not stay in cache, and their layers split well over the threads.

    if applies(graph, arrays, training): outputs = run(arrays, run_group)   # see functional.Graph.run
"""
import threading

import numpy as np

from tlkit.engine.layers.activation import Activation
from tlkit.engine.layers.batch_normalization import BatchNormalization
from tlkit.engine.layers.conv2d import Conv2D
from tlkit.engine.layers.dense import Dense
from tlkit.engine.layers.dropout import Dropout
from tlkit.engine.layers.global_pooling import GlobalAveragePooling2D, GlobalMaxPooling2D
from tlkit.engine.layers.merging import Add, Concatenate
from tlkit.engine.layers.pooling import AveragePooling2D, MaxPooling2D
from tlkit.engine.layers.relu import ReLU
from tlkit.engine.layers.reshaping import Flatten
from tlkit.engine.tape import active_tape
from tlkit.utils import threads

# The largest activation of one image that a run holds (outputs computed inside a fused pair never
# exist): at most this, and a group of a few images stays in a core's L2 + its share of L3.
SPLIT_IMAGE_BYTES = 2 << 20
# Images per group at least: each group pays every step's Python again (compiled_steps.py: ~15 us a step).
MIN_IMAGES = 2
# Groups per thread: more balance the threads' loads (a descheduled thread delays one group) and
# keep each group's activations nearer the core; each costs the graph's per-layer Python again.
GROUPS_PER_THREAD = 4
# None chooses; True / False force the route (tests take both sides whatever the machine).
ENABLED = None
# Layers whose inference call depends on nothing but its own inputs and weights, each sample on
# its own, and keeps no per-call state: several threads may run them on different images at once.
# Exact classes: a subclass may override call.
PER_SAMPLE_LAYERS = (Activation, Add, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, Dense, Dropout,
                     Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D, ReLU)


def largest_image_bytes(graph):
    """Bytes of the largest per-image activation a run of ``graph`` holds, or None when the graph
    cannot run as groups (a layer outside PER_SAMPLE_LAYERS, a size known only at call time)."""
    plan = graph.plan
    hidden = set()  # outputs computed inside a fused pair or epilogue: never stored
    for node_id, (consumer, _) in plan.fused.items():
        node = next(n for n in graph.nodes if id(n) == node_id)
        hidden.add(id(node.outputs[0]))
        chain = plan.epilogues.get(node_id, ())
        if chain:
            hidden.add(id(consumer.outputs[0]))
            hidden.update(id(n.outputs[0]) for _, n, _ in chain[:-1])
    largest = 0
    for node in graph.nodes:
        if type(node.layer) not in PER_SAMPLE_LAYERS:
            return None
        for t in node.outputs:
            if id(t) in hidden:
                continue
            if any(d is None for d in t.shape[1:]):
                return None
            largest = max(largest, 4 * int(np.prod(t.shape[1:], dtype=np.int64)))
    return largest


def applies(image_bytes, arrays, training):
    """Whether this call runs as groups of images: inference with nothing recording, a graph whose
    per-image activations (``largest_image_bytes``) are small, a batch of at least MIN_IMAGES per
    thread, and a numba threading layer that lets kernels run on several threads at once."""
    if ENABLED is False or training or active_tape() is not None or image_bytes is None:
        return False
    if not arrays or any(not isinstance(a, np.ndarray) or a.ndim < 1 for a in arrays) \
            or len({len(a) for a in arrays}) != 1:
        return False
    parts = threads.num_threads()
    if parts < 2 or len(arrays[0]) < MIN_IMAGES * parts or not threads.chunks_can_run_numba():
        return False
    return ENABLED is True or image_bytes <= SPLIT_IMAGE_BYTES


def run(arrays, run_group):
    """The outputs of run_group(slot, [a[i:j] for a in arrays]) -> [outputs of images i..j), for
    groups of images shared by the threads, assembled into whole-batch arrays."""
    n = len(arrays[0])
    parts = threads.num_threads()
    groups = max(parts, min(n // MIN_IMAGES, parts * GROUPS_PER_THREAD))
    outs, lock = [], threading.Lock()

    def group(slot, i, j):
        got = run_group(slot, [a[i:j] for a in arrays])
        with lock:
            if not outs:
                outs.extend(np.empty((n,) + r.shape[1:], r.dtype) for r in got)
        for whole, part in zip(outs, got):
            whole[i:j] = part

    threads.limit_blas()
    threads.run_chunks(np.linspace(0, n, groups + 1).astype(int), group, parts, pin=True)
    return outs
