"""Inverted-residual blocks (MobileNetV2, EfficientNet-Lite) at inference as one step: expand 1x1 conv
-> depthwise conv -> project 1x1 conv, each with its BatchNormalization folded in, fused over bands
of rows (kernels/mbconv_bands.py), so the block's expanded activations never go to memory.

The inference plan finds the blocks among its own fusions (``find_blocks``): a DepthwiseConv2D
with its BatchNormalization and one clip (ReLU6) after it, read only by a 1x1 stride-1 Conv2D with
its BatchNormalization (and the residual Add, a clip), and, when the block expands, fed only by a
1x1 stride-1 Conv2D with its BatchNormalization and one clip, or by a 3x3 conv over 3 channels (a
stem: its rows, computed band by band, are the expanded rows; kernels/stem_conv.py); a ZeroPadding2D
the depthwise conv absorbs may sit between. ``run`` computes such a block when nothing records (no tape) and every
BatchNormalization uses its moving statistics; otherwise (or on shapes the band kernels do not
take) it declines and the layers run as planned one by one.

    block = plan.blocks.get(id(node))
    if block is not None and run(block, execution): ...   # the block's output is in execution.values
"""
from dataclasses import dataclass

import numpy as np

from tlkit.engine import small_steps
from tlkit.engine.kernels.geometry import pads
from tlkit.engine.layers.conv2d import Conv2D
from tlkit.engine.layers.conv_epilogue import clip_bounds, folded_weights
from tlkit.engine.layers.depthwise_conv2d import DepthwiseConv2D

# False turns the fusion off (tests and A/B scripts take both sides).
ENABLED = True
# False: plans built from then on leave a stem conv out of the block after it (A/B scripts).
STEMS = True
# False: the folded arguments are worked out again at every call (A/B scripts).
KEEP_ARGUMENTS = True
# False: compiled steps go through run() at every call (A/B scripts).
REPLAY = True


@dataclass
class Block:
    """The nodes of one block: ``expand`` / ``depthwise`` / ``project`` = (conv node, BN node,
    [(kind, node, the Add's other input or None), ...]) (expand None without one), ``padder`` the
    absorbed ZeroPadding2D node or None; ``inner`` ids of every node the block computes."""
    expand: tuple
    padder: object
    depthwise: tuple
    project: tuple
    inner: set

    @property
    def output(self):
        conv, bn, chain = self.project
        return (chain[-1][1] if chain else bn).outputs[0]


def _pointwise(layer):
    return (type(layer) is Conv2D and layer.kernel_size == (1, 1) and layer.strides == (1, 1)
            and layer.groups == 1)


def _stem(node):
    """A 3x3 conv over 3 channels (MobileNetV2's and EfficientNet's stem): its rows are computed band
    by band as the block's expanded rows (kernels/stem_conv.py)."""
    layer = node.layer
    return (type(layer) is Conv2D and layer.kernel_size == (3, 3) and layer.groups == 1
            and layer.dilation_rate == (1, 1) and all(s in (1, 2) for s in layer.strides)
            and node.inputs[0].shape[-1] == 3)


def _one_clip(chain):
    return len(chain) == 1 and chain[0][0] == "clip"


def find_blocks(nodes, consumers, kept, fused, epilogues, absorbing):
    """{id(first node of the block): Block} for the blocks among the plan's fusions (see the module's
    docstring); ``fused``, ``epilogues`` and ``absorbing`` are the plan's."""
    def step(node):
        bn, keyword = fused.get(id(node), (None, None))
        return (node, bn, epilogues.get(id(node), [])) if keyword == "batch_norm" else None

    def sole_reader(tensor):
        users = consumers.get(id(tensor), [])
        return users[0] if len(users) == 1 and id(tensor) not in kept else None

    # the conv whose fused chain ends in a tensor: {id(tensor): conv node}
    chain_end = {id(epilogues[id(n)][-1][1].outputs[0]): n for n in nodes if id(n) in epilogues}
    position = {id(n): i for i, n in enumerate(nodes)}
    blocks = {}
    for node in nodes:
        depthwise = step(node) if type(node.layer) is DepthwiseConv2D else None
        if depthwise is None or node.layer.depth_multiplier != 1 or not _one_clip(depthwise[2]):
            continue
        reader = sole_reader(depthwise[2][-1][1].outputs[0])
        project = None if reader is None else step(reader)
        if project is None or not _pointwise(project[0].layer):
            continue
        padder = absorbing.get(id(node))
        source = (padder or node).inputs[0]
        expand = step(chain_end[id(source)]) if id(source) in chain_end else None
        if (expand is None or not (_pointwise(expand[0].layer) or STEMS and _stem(expand[0]))
                or not _one_clip(expand[2])
                or sole_reader(source) is not (padder or node)):
            expand = None
        first = (expand or depthwise)[0]
        # the residual Add's other input must exist when the block starts
        if any(other is not None and position.get(id(other.node), -1) >= position[id(first)]
               for _, _, other in project[2]):
            continue
        parts = [p for p in (expand, depthwise, project) if p is not None]
        inner = {id(n) for conv, bn, chain in parts for n in (conv, bn, *(c[1] for c in chain))}
        if padder is not None:
            inner.add(id(padder))
        blocks[id(first)] = Block(expand, padder, depthwise, project, inner)
    return blocks


def _folded(step, training):
    """(kernel as (in, out) or (kh, kw, C), bias, low, high) of a conv step with its BN folded, or None
    when the BN computes batch statistics."""
    conv_node, bn_node, chain = step
    conv, bn = conv_node.layer, bn_node.layer
    if not bn.uses_moving_statistics(training):
        return None
    if type(conv) is DepthwiseConv2D:
        kernel, bias = conv.depthwise_kernel.value, None if conv.bias is None else conv.bias.value
        kh, kw, ch, _ = kernel.shape
        kernel, bias = folded_weights(conv, kernel, bias, bn, (kh, kw, ch))
        kernel = kernel.reshape(kh, kw, ch)
    else:
        kernel = conv.kernel.value
        kernel, bias = folded_weights(conv, kernel, conv._bias_value(), bn, kernel.shape)
        if kernel.shape[:2] == (1, 1):
            kernel = kernel.reshape(kernel.shape[2:])
    clip = next((clip_bounds(n.layer) for kind, n, _ in chain if kind == "clip"), None)
    low, high = (None, None) if clip is None else clip
    return (np.ascontiguousarray(kernel, np.float32), np.ascontiguousarray(bias, np.float32),
            np.float32(-np.inf if low is None else low), np.float32(np.inf if high is None else high))


def _stem_rows(conv, folded, x_shape, kernels):
    """kernels.StemRows (stem_conv's, through mbconv_bands) for a stem conv's folded weights."""
    (sh, sw), oh_ow = conv.strides, tuple(conv.compute_output_shape(x_shape)[1:3])
    top, left = pads(x_shape[1], 3, sh, conv.padding)[0], pads(x_shape[2], 3, sw, conv.padding)[0]
    return kernels.StemRows(*folded, conv.strides, top, left, oh_ow)


def _geometry(block, x_shape):
    """(output shape of the depthwise conv, top, left) for an input of ``x_shape``, or None."""
    layer = block.depthwise[0].layer
    kh, kw = layer.kernel_size
    (sh, sw), dilation = layer.strides, layer.dilation_rate
    shape = tuple(x_shape)
    if block.padder is not None:
        (top, _), (left, _) = block.padder.layer.padding
        shape = block.padder.layer.compute_output_shape(shape)
    else:
        top = pads(x_shape[1], kh, sh, layer.padding, dilation[0])[0]
        left = pads(x_shape[2], kw, sw, layer.padding, dilation[1])[0]
    try:
        return layer.compute_output_shape(shape), top, left
    except ValueError:
        return None


def _weights_key(block):
    """What a block's folded arguments depend on besides the input's shape: every weight of its convs and
    BatchNormalizations (array and version, as conv_epilogue.folded_weights keys them), or None when one
    of those layers is trainable (its folded weights are then recomputed at each call)."""
    key = []
    for conv_node, bn_node, _ in (p for p in (block.expand, block.depthwise, block.project) if p is not None):
        for layer in (conv_node.layer, bn_node.layer):
            if layer.trainable:
                return None
            key += [(id(v.value), v.version) for v in layer._own_weights]
    return tuple(key)


def _arguments(block, x_shape, training):
    """(expand, depthwise, project, stem, output shape, flops, packed weights) for
    mbconv_bands.inverted_residual on an input of ``x_shape``, or None when the block has to run layer by
    layer."""
    from tlkit.engine.kernels import mbconv_bands  # numba, loaded on first use

    dw_layer = block.depthwise[0].layer
    steps = [None if block.expand is None else _folded(block.expand, training),
             _folded(block.depthwise, training), _folded(block.project, training)]
    if any(s is None for s, part in zip(steps, (block.expand, 1, 1)) if part is not None):
        return None
    expand, depthwise, project = steps
    stem, source_shape = None, x_shape
    if expand is not None and expand[0].ndim == 4:  # the stem's rows are the expanded rows
        stem, expand = _stem_rows(block.expand[0].layer, expand, x_shape, mbconv_bands), None
        source_shape = stem.output_shape(x_shape)
    geometry = _geometry(block, source_shape)
    channels = source_shape[-1] if expand is None else expand[0].shape[1]
    if (geometry is None or (expand is not None and expand[0].shape[0] != x_shape[-1])
            or depthwise[0].shape[2] != channels or project[0].shape[0] != channels):
        return None
    (n, oh, ow, _), top, left = geometry
    shape = (n, oh, ow, project[0].shape[1])
    flops = 2 * n * oh * ow * channels * (dw_layer.kernel_size[0] * dw_layer.kernel_size[1] + shape[-1])
    if expand is not None or stem is not None:
        flops += 2 * source_shape[0] * source_shape[1] * source_shape[2] * (
            x_shape[3] if stem is None else 27) * channels
    packed = mbconv_bands.packings(expand, project)
    return expand, depthwise[:4] + (dw_layer.strides, top, left), project, stem, shape, flops, packed


def replay(block, x, residual, out):
    """``run`` for a compiled step (compiled_steps.py) on the arrays its first run took: x the block's
    input, residual the Add's other input or None, out the output buffer. Only the checks a replay can
    fail (the flag, the input's shape and layout, the weights' key) are made, and the kept arguments are
    used as they are (at batch 1 run's Python cost 20-40 us a block, its objects out of cache after each
    block's products); False, with nothing done: the caller goes through ``run``."""
    kept = getattr(block, "kept", None)
    if (not (ENABLED and REPLAY) or kept is None or x.dtype != np.float32 or not x.flags.c_contiguous
            or kept[0] != (x.shape, False, _weights_key(block))):
        return False
    expand, depthwise, project, stem, shape, flops, packed = kept[1]
    if out.shape != shape or (residual is not None and residual.shape != shape):
        return False
    if residual is not None:
        residual = np.ascontiguousarray(residual, np.float32)
    parts = 1 if small_steps.ENABLED and flops < small_steps.flops_bar() else None
    _kernels().inverted_residual(x, expand, depthwise, project, residual, out, parts, stem, packed)
    return True


def _kernels():
    """kernels/mbconv_bands (numba: loaded on first use, then kept)."""
    global _mbconv_bands
    if _mbconv_bands is None:
        from tlkit.engine.kernels import mbconv_bands
        _mbconv_bands = mbconv_bands
    return _mbconv_bands


_mbconv_bands = None


def run(block, execution):
    """Compute ``block`` into ``execution.values`` (its output in a recycled buffer) and mark its
    nodes done; False, with nothing done, when the block has to run layer by layer. The folded
    arguments are kept on the block between calls while its layers are frozen and the input's shape
    and the weights stay the same (at batch 1 working them out again cost about as much as a 7x7
    block's products)."""
    from tlkit.engine.kernels import mbconv_bands  # numba, loaded on first use

    first = block.expand or block.depthwise
    x = execution.values[id(first[0].inputs[0])]
    training = execution.training
    dw_layer = block.depthwise[0].layer
    if (not ENABLED or id(block.output) in execution.plan.slices or not isinstance(x, np.ndarray)
            or x.dtype != np.float32 or x.ndim != 4 or not x.flags.c_contiguous or not mbconv_bands.supported(
                dw_layer.kernel_size + (x.shape[-1],), dw_layer.strides, dw_layer.dilation_rate)):
        return False
    weights = _weights_key(block) if KEEP_ARGUMENTS else None
    key = None if weights is None else (x.shape, training, weights)
    kept = getattr(block, "kept", None)
    if key is not None and kept is not None and kept[0] == key:
        arguments = kept[1]
    else:
        arguments = _arguments(block, x.shape, training)
        block.kept = None if key is None or arguments is None else (key, arguments)
    if arguments is None:
        return False
    expand, depthwise, project, stem, shape, flops, packed = arguments
    others = [other for kind, _, other in block.project[2] if kind == "add"]
    residual = execution.values[id(others[0])] if others else None
    if residual is not None:
        if residual.shape != shape:
            return False
        residual = np.ascontiguousarray(residual, np.float32)
    out = execution.buffer_for(block.output, shape)
    parts = 1 if small_steps.ENABLED and flops < small_steps.flops_bar() else None
    mbconv_bands.inverted_residual(x, expand, depthwise, project, residual, out, parts, stem, packed)
    execution.values[id(block.output)] = out
    execution.done.update(block.inner)
    return True
