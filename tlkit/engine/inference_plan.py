"""Where a layer graph's outputs go when nothing records them (all of inference, and a frozen
prefix while training): planned once per graph from what each layer declares it can do, then
carried out call after call by an Execution.

- a channel concatenation's inputs are written straight into slices of its output, so the
  concatenation costs no copy (SqueezeNet's fire modules);
- other intermediate outputs come from a pool of buffers recycled within the call and from the
  previous call: a fresh 100 MB array costs tens of milliseconds of page faults, as much as the
  layer's own work. A buffer serves any output that fits in it (the smallest free one that does),
  so the pool holds about the largest set of activations alive at once (VGG16: one layer's input
  and output), not one buffer per distinct shape;
- a layer whose only consumer it can fuse with (a small-window convolution and its max pool)
  computes both in one pass, so its full-size output never exists;
- a convolution fused with its BatchNormalization also applies what follows alone (a residual
  Add, a ReLU) in its output pass (``epilogue_chains``; MobileNetV2, EfficientNet, ResNet50);
- an inverted-residual block (expand 1x1 -> depthwise -> project 1x1, each with its BN) runs as
  one step over bands of rows when nothing records (``inverted_residuals.py``).

What a layer declares (class attributes and methods of Layer; see conv2d.py, pooling.py and
merging.py for the layers that declare them):
- ``accepts_output_buffer``: ``call(..., out=array)`` writes its output into ``array``;
- ``writes_channel_slice``: that ``out`` may be a channel slice of a wider array;
- ``concatenates_channels(output_shape)``: its inputs may be written into slices of its output;
- ``fuses_with(input_shape, consumer)``: the keyword with which ``call`` also computes the one
  layer reading its output, or None;
- ``absorbs_padding(producer)``: ``call(..., zero_padding=producer)`` takes the producer's input
  (a ZeroPadding2D's) with the zeros in place, so the padded copy is skipped (depthwise_conv2d.py);
- ``fuses_epilogue(consumer, kinds_so_far)``: after a "batch_norm" fusion, the kind of step
  ("add", "clip") ``consumer`` adds to ``call(..., epilogue=[(kind, layer, residual), ...])``, or None.
A declaration holds for the class that declares it together with its ``call``: a subclass that
overrides ``call`` has to declare again (its new ``call`` may not take ``out=``).
"""
import math

import numpy as np

from tlkit.engine import inverted_residuals, small_steps
from tlkit.engine.symbolic import flatten
from tlkit.engine.tape import active_tape


def declares(layer, capability):
    """The layer's value of ``capability``, if the class that set it also defines the ``call`` in use."""
    mro = type(layer).__mro__
    owner = next((k for k in mro if capability in vars(k)), None)
    call_owner = next((k for k in mro if "call" in vars(k)), None)
    return getattr(layer, capability) if owner is not None and owner is call_owner else None


class InferencePlan:
    """Placements of one graph: ``slices`` {id(tensor): (concat node, lo, hi)} for the concatenation
    inputs written in place, ``assembled`` ids of the concatenation nodes built in a buffer,
    ``pooled`` ids of the intermediate outputs that live in recycled buffers, and ``fused``
    {id(node): (its consumer node, the call keyword)} for the pairs computed in one pass."""

    def __init__(self, nodes, inputs, outputs):
        kept = {id(t) for t in outputs} | {id(t) for t in inputs}
        consumers = {}
        for node in nodes:
            for t in node.inputs:
                consumers.setdefault(id(t), []).append(node)
        self.fused = {}
        for node in nodes:
            t = node.outputs[0]
            users = consumers.get(id(t), [])
            fuses_with = declares(node.layer, "fuses_with")
            if (fuses_with is not None and id(t) not in kept and len(node.outputs) == 1 and len(users) == 1
                    and len(users[0].inputs) == 1):
                keyword = fuses_with(node.inputs[0].shape, users[0].layer)
                if keyword:
                    self.fused[id(node)] = (users[0], keyword)

        # A ZeroPadding2D whose one reader takes its input with the zeros in place (``absorbs_padding``):
        # no padded copy at inference. {id(pad node): reader node} and {id(reader node): pad node}.
        self.absorbed, self.absorbing = {}, {}
        for node in nodes:
            users = consumers.get(id(node.outputs[0]), [])
            absorbs = declares(users[0].layer, "absorbs_padding") if len(users) == 1 else None
            if (absorbs is not None and id(node.outputs[0]) not in kept and len(node.outputs) == 1
                    and len(node.inputs) == 1 and len(users[0].inputs) == 1 and absorbs(node.layer)):
                self.absorbed[id(node)], self.absorbing[id(users[0])] = users[0], node

        def takes_out(t):
            return (id(t) not in kept and len(t.node.outputs) == 1
                    and bool(declares(t.node.layer, "accepts_output_buffer")))

        def takes_channel_slice(t):
            return (takes_out(t) and bool(declares(t.node.layer, "writes_channel_slice"))
                    and id(t.node) not in self.fused)

        self.slices, self.assembled = {}, set()
        for node in nodes:
            concatenates = declares(node.layer, "concatenates_channels")
            if concatenates is not None and concatenates(node.outputs[0].shape):
                self.assembled.add(id(node))
                lo = 0
                for t in node.inputs:
                    if (takes_channel_slice(t) and consumers[id(t)] == [node]
                            and sum(u is t for u in node.inputs) == 1):
                        self.slices[id(t)] = (node, lo, lo + t.shape[-1])
                    lo += t.shape[-1]
        self.pooled = {id(n.outputs[0]) for n in nodes
                       if id(n.outputs[0]) not in self.slices and id(n.outputs[0]) not in kept
                       and (takes_out(n.outputs[0]) or id(n) in self.assembled)}
        self.epilogues = epilogue_chains(nodes, consumers, kept, self.fused)
        self.pooled |= folded_outputs(nodes, kept, self.fused, self.epilogues)
        # expand -> depthwise -> project blocks computed as one step over bands of rows
        self.blocks = inverted_residuals.find_blocks(nodes, consumers, kept, self.fused, self.epilogues,
                                                     self.absorbing)
        self.alone = {}  # small_steps.runs_alone's answers, per node and input shapes
        self.out_shapes = {}  # Execution.compute's output shapes, per node, fused consumer and input shape


def epilogue_chains(nodes, consumers, kept, fused):
    """{id(conv node): [(kind, node, the Add's other input or None), ...]}: the layers after a
    convolution fused with its BatchNormalization that join its output pass, each the only reader
    of the tensor before it; an Add's other input must come from an earlier node."""
    position = {id(n): i for i, n in enumerate(nodes)}
    chains = {}
    for node in nodes:
        bn_node, keyword = fused.get(id(node), (None, None))
        fuses_epilogue = declares(node.layer, "fuses_epilogue")
        if keyword != "batch_norm" or fuses_epilogue is None:
            continue
        chain, tail = [], bn_node
        while id(tail.outputs[0]) not in kept and len(consumers.get(id(tail.outputs[0]), [])) == 1:
            t, user = tail.outputs[0], consumers[id(tail.outputs[0])][0]
            kind = fuses_epilogue(user.layer, [k for k, _, _ in chain]) if len(user.outputs) == 1 else None
            others = [u for u in user.inputs if u is not t]
            if kind == "clip" and len(user.inputs) == 1:
                chain.append((kind, user, None))
            elif (kind == "add" and len(user.inputs) == 2 and len(others) == 1
                  and position.get(id(others[0].node), -1) < position[id(node)]):
                chain.append((kind, user, others[0]))
            else:
                break
            tail = user
        if chain:
            chains[id(node)] = chain
    return chains


def folded_outputs(nodes, kept, fused, epilogues):
    """Ids of the last outputs of convolutions fused with their BatchNormalization (and epilogue),
    when the convolution takes an output buffer: they live in recycled buffers too."""
    out = set()
    for node in nodes:
        bn_node, keyword = fused.get(id(node), (None, None))
        if keyword == "batch_norm" and declares(node.layer, "accepts_output_buffer"):
            last = epilogues[id(node)][-1][1] if id(node) in epilogues else bn_node
            if id(last.outputs[0]) not in kept:
                out.add(id(last.outputs[0]))
    return out


class Execution:
    """One run of a planned graph: values by tensor id and where their memory comes from."""

    def __init__(self, plan, inputs, arrays, training, free):
        self.plan = plan
        self.training = training
        self.tape = active_tape()
        self.values = {id(t): a for t, a in zip(inputs, arrays)}
        self.free = free  # flat float32 buffers released by the previous run
        self.released = []  # flat float32 buffers released by this run
        self.owned = {}  # id(tensor) -> the recycled flat buffer it lives in
        self.concat_bufs = {}  # id(concat node) -> its output buffer, from when its first input is placed
        self.placed = set()  # ids of concatenation inputs already written into their slice
        self.pinned = []  # arrays a tape record may hold on to: their buffers are never recycled
        self.done = set()  # ids of consumer nodes already computed with the node before them

    def buffer_for(self, t, shape):
        shape = tuple(shape)
        if id(t) not in self.plan.pooled:
            return np.empty(shape, np.float32)
        size = math.prod(shape)  # (np.prod costs microseconds a call: a few hundred a forward)
        # This run's released buffers first (fewer buffers held), then last run's.
        flat = _take(self.released, size) if self.released else None
        if flat is None:
            flat = _take(self.free, size)
        if flat is None:
            # Nothing fits: a fresh buffer, and the largest released one that was too small goes
            # (kept, it would only ever serve smaller outputs while this one is held as well).
            if self.released:
                self.released.pop(max(range(len(self.released)), key=lambda i: len(self.released[i])))
            flat = np.empty(size, np.float32)
        self.owned[id(t)] = flat
        return flat[:size].reshape(shape)

    def release(self, tensor_ids):
        for gone in tensor_ids:
            self.values.pop(gone, None)
            buf = self.owned.pop(gone, None)
            # Recycle only if nothing still alive views it (e.g. a Reshape of it).
            if buf is not None and not any(np.may_share_memory(buf, v) for v in [*self.values.values(), *self.pinned]):
                self.released.append(buf)

    def compute(self, node):
        """Run one node (or a node and the consumer fused with it); its outputs go into values."""
        if id(node) in self.done:
            return
        block = self.plan.blocks.get(id(node)) if self.tape is None else None
        if block is not None and inverted_residuals.run(block, self):
            return
        if id(node) in self.plan.absorbed and self.tape is None:
            # its reader takes the unpadded input (absorbs_padding), which stands for the output here
            src, t = node.inputs[0], node.outputs[0]
            self.values[id(t)] = self.values[id(src)]
            if id(src) in self.owned:
                self.owned[id(t)] = self.owned.pop(id(src))
            return
        args = [self.values[id(t)] for t in node.inputs]
        layer_args = args if node.input_structure else args[0]
        if self.tape is not None and node.layer._records_on(self.tape, args):
            # This call keeps its inputs for backward and makes its own outputs.
            self.pinned.extend(args)
            # A call made with training=False in the graph (a frozen base) keeps it while the model trains.
            result, produced = node.layer(layer_args, **{"training": self.training, **node.kwargs}), node
        elif id(node) in self.plan.assembled:
            result, produced = self.concatenate(node, args), node
        else:
            produced, out, kwargs = self.prepare(node, args)
            # A small step runs on this thread alone: a hand-off would cost more than it saves.
            if small_steps.runs_alone(self.plan.alone, node, tuple(a.shape for a in args)):
                result = small_steps.call_alone(node.layer, layer_args, kwargs)
            else:
                result = node.layer(layer_args, **kwargs)
            t = produced.outputs[0]
            if id(t) in self.plan.slices and is_same_view(result, out):
                self.placed.add(id(t))
        for t, r in zip(produced.outputs, flatten(result)):
            self.values[id(t)] = r

    def prepare(self, node, args):
        """(the node whose outputs the call produces, the output buffer or None, the call's keywords) of
        ``node``'s inference call on ``args``: its fused consumer and epilogue (marked done), absorbed
        padding, and where its output goes (a concatenation's channel slice, a recycled buffer)."""
        consumer, keyword = self.plan.fused.get(id(node), (None, None))
        chain = self.plan.epilogues.get(id(node), ())
        if self.tape is not None and (consumer is not None or chain) and self.fusion_records(consumer, chain):
            consumer, keyword, chain = None, None, ()
        produced = node if consumer is None else chain[-1][1] if chain else consumer
        t = produced.outputs[0]
        padder = self.plan.absorbing.get(id(node)) if self.tape is None else None

        def out_shape():
            # Once per node, consumer, absorbed padding and input shape: the layers' shape
            # arithmetic is Python.
            key = (id(node), id(consumer), padder is None, args[0].shape)
            shape = self.plan.out_shapes.get(key)
            if shape is None:
                shape = tuple(args[0].shape)
                shape = shape if padder is None else padder.layer.compute_output_shape(shape)
                shape = node.layer.compute_output_shape(shape)
                shape = shape if consumer is None else consumer.layer.compute_output_shape(shape)
                small_steps.remember(self.plan.out_shapes, key, shape)
            return shape

        out = None
        if id(t) in self.plan.slices:
            cnode, lo, hi = self.plan.slices[id(t)]
            shape = out_shape()
            if id(cnode) not in self.concat_bufs:
                self.concat_bufs[id(cnode)] = self.buffer_for(cnode.outputs[0],
                                                              shape[:-1] + (cnode.outputs[0].shape[-1],))
            out = self.concat_bufs[id(cnode)][..., lo:hi]
            if out.shape != tuple(shape):  # inputs of unexpected sizes: let the layers raise
                out = None
        elif id(t) in self.plan.pooled:
            out = self.buffer_for(t, out_shape())
        kwargs = node.kwargs if out is None else dict(node.kwargs, out=out)
        if padder is not None:
            kwargs = dict(kwargs, zero_padding=padder.layer)
        if consumer is not None:
            kwargs = dict(kwargs, **{keyword: consumer.layer})
            self.done.add(id(consumer))
        if chain:
            kwargs = dict(kwargs, epilogue=[(kind, n.layer, None if other is None else self.values[id(other)])
                                            for kind, n, other in chain])
            self.done.update(id(n) for _, n, _ in chain)
        return produced, out, {"training": self.training, **kwargs}

    def fusion_records(self, consumer, chain):
        """Whether a layer fused after a node would go on the tape (it has trainable weights, or an
        Add's other input needs a gradient): then each layer runs on its own."""
        steps = [(consumer, None)] + [(n, other) for _, n, other in chain]
        return any(n.layer._records_on(self.tape, [] if other is None else [self.values[id(other)]])
                   for n, other in steps)

    def concatenate(self, node, args):
        """A channel concatenation into its buffer; inputs not already written in place are copied in."""
        buf = self.concat_bufs.pop(id(node), None)
        rest = args[0].shape[:-1]
        if (any(a.ndim != len(rest) + 1 or a.shape[:-1] != rest for a in args)
                or sum(a.shape[-1] for a in args) != node.outputs[0].shape[-1]
                or buf is not None and buf.shape[:-1] != rest):
            return node.layer(args)  # raises the layer's own error about the shapes
        if buf is None:
            buf = self.buffer_for(node.outputs[0], rest + (node.outputs[0].shape[-1],))
        lo = 0
        for t, a in zip(node.inputs, args):
            hi = lo + a.shape[-1]
            if id(t) not in self.placed:
                buf[..., lo:hi] = a
            lo = hi
        node.layer._last_output_shape = (None,) + buf.shape[1:]
        return buf


def is_same_view(result, out):
    """Whether a call's result is ``out`` (None: no out), or a view of exactly its memory (a kernel
    returning ``whole[..., lo:hi]`` of the channel slice it was given): written in place."""
    return out is not None and (result is out or (
        isinstance(result, np.ndarray) and result.shape == out.shape and result.strides == out.strides
        and result.dtype == out.dtype and result.ctypes.data == out.ctypes.data))


def _take(buffers, size):
    """Remove and return the smallest buffer of ``buffers`` holding at least ``size`` floats, or None."""
    fits = [i for i, b in enumerate(buffers) if len(b) >= size]
    return buffers.pop(min(fits, key=lambda i: len(buffers[i]))) if fits else None
