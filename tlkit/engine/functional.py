"""The layer graph behind the Functional API: ordering, validation and execution.

Calls that are not recorded on a tape (all of inference, and a frozen prefix while training)
place outputs themselves for layers whose ``call`` takes ``out=`` (Conv2D, MaxPooling2D):
- a channel Concatenate's inputs are written straight into slices of its output, so the
  concatenation costs no copy (SqueezeNet's fire modules);
- other intermediate outputs come from a pool of buffers recycled from the previous call:
  a fresh 100 MB array costs ~35 ms of page faults here, as much as the layer's own work;
- a small-window convolution whose only consumer is a max pool runs fused with it.
"""
import inspect

import numpy as np

from tlkit.engine.layers.conv2d import Conv2D
from tlkit.engine.layers.input_layer import InputLayer
from tlkit.engine.layers.merging import Concatenate
from tlkit.engine.layers.pooling import MaxPooling2D
from tlkit.engine.symbolic import KerasTensor, flatten
from tlkit.engine.tape import active_tape


class Graph:
    """Nodes between ``inputs`` and ``outputs``, in an order that respects their dependencies."""

    def __init__(self, inputs, outputs, model_name):
        self.inputs = flatten(inputs)
        self.outputs = flatten(outputs)
        for kind, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            for t in tensors:
                if not isinstance(t, KerasTensor):
                    raise TypeError(
                        f"Model '{model_name}': all {kind} must be symbolic tensors from tlkit.Input or a layer "
                        f"call, got {type(t).__name__}."
                    )
        for t in self.inputs:
            if not isinstance(t.node.layer, InputLayer):
                raise ValueError(f"Model '{model_name}': inputs must come straight from tlkit.Input(); "
                                 f"{t.name} is the output of layer '{t.node.layer.name}'.")
        self.nodes = self._order(model_name)
        self._release_after = self._last_uses()
        self._slices, self._assembled, self._pooled, self._conv_pools = self._placements()
        self._free = {}  # output shape -> buffers released by the last inference run
        self.layers = []
        for t in self.inputs:
            self.layers.append(t.node.layer)
        for node in self.nodes:
            if node.layer not in self.layers:
                self.layers.append(node.layer)

    def _order(self, model_name):
        input_ids = {id(t) for t in self.inputs}
        order, done, visiting = [], set(), set()
        reached = set()

        def visit(tensor, consumer):
            if id(tensor) in input_ids:
                reached.add(id(tensor))
                return
            node = tensor.node
            if node is None or isinstance(node.layer, InputLayer):
                used = ", ".join(repr(n.layer.name) for n in order) or "none"
                raise ValueError(
                    f"Graph disconnected: cannot obtain value for tensor {tensor.name} (shape {tensor.shape}) "
                    f"needed by layer '{consumer}' of model '{model_name}'. Add it to the model's inputs. "
                    f"Layers reached without issue: {used}."
                )
            if id(node) in done:
                return
            if id(node) in visiting:
                raise ValueError(f"Model '{model_name}': the layer graph has a cycle at '{node.layer.name}'.")
            visiting.add(id(node))
            for t in node.inputs:
                visit(t, node.layer.name)
            visiting.discard(id(node))
            done.add(id(node))
            order.append(node)

        for out in self.outputs:
            visit(out, "(model output)")
        return order

    def _last_uses(self):
        """Per node, the tensors no later node needs: run() drops them, so inference holds only the
        activations still to be used (VGG16 at batch 8 would otherwise keep ~1 GB of them)."""
        keep = {id(t) for t in self.outputs}
        last = {}
        for i, node in enumerate(self.nodes):
            for t in node.inputs:
                last[id(t)] = i
        release = [[] for _ in self.nodes]
        for tid, i in last.items():
            if tid not in keep:
                release[i].append(tid)
        return release

    def _placements(self):
        """Where inference writes outputs: {id(tensor): (concat node, lo, hi)} for the concatenation
        inputs written in place, the ids of channel-Concatenate nodes it assembles, the ids of the
        intermediate outputs that live in recycled buffers, and {id(conv node): max-pool node} for
        the pairs computed in one pass."""
        kept = {id(t) for t in self.outputs} | {id(t) for t in self.inputs}
        consumers = {}
        for node in self.nodes:
            for t in node.inputs:
                consumers.setdefault(id(t), []).append(node)
        # A convolution whose only consumer is a max pool: both in one pass when the conv's kernel
        # supports it, so its full-size output never exists (SqueezeNet's conv1 -> pool1: 100 MB).
        conv_pools = {}
        for node in self.nodes:
            t = node.outputs[0]
            users = consumers.get(id(t), [])
            if (type(node.layer) is Conv2D and id(t) not in kept and len(users) == 1
                    and type(users[0].layer) is MaxPooling2D and len(users[0].inputs) == 1
                    and node.layer.fuses_max_pool(node.inputs[0].shape, users[0].layer)):
                conv_pools[id(node)] = users[0]

        def takes_out(t):
            return (id(t) not in kept and len(t.node.outputs) == 1
                    and "out" in inspect.signature(t.node.layer.call).parameters)

        def takes_channel_slice(t):  # only a plain convolution writes into a slice of a wider array
            return takes_out(t) and type(t.node.layer) is Conv2D and id(t.node) not in conv_pools

        slices, assembled = {}, set()
        for node in self.nodes:
            shape = node.outputs[0].shape
            if (type(node.layer) is Concatenate and node.layer.axis % len(shape) == len(shape) - 1
                    and all(d is not None for d in shape[1:])):
                assembled.add(id(node))
                lo = 0
                for t in node.inputs:
                    if (takes_channel_slice(t) and consumers[id(t)] == [node]
                            and sum(u is t for u in node.inputs) == 1):
                        slices[id(t)] = (node, lo, lo + t.shape[-1])
                    lo += t.shape[-1]
        pooled = {id(n.outputs[0]) for n in self.nodes
                  if id(n.outputs[0]) not in slices and (takes_out(n.outputs[0]) or id(n) in assembled)
                  and id(n.outputs[0]) not in kept}
        return slices, assembled, pooled, conv_pools

    def run(self, arrays, training):
        free, self._free = self._free, {}  # this run's own pool: concurrent runs never share a buffer
        run = _Run(self, arrays, training, free)
        for node, release in zip(self.nodes, self._release_after):
            if id(node) not in run.fused:
                run.compute(node)
            run.release(release)
        self._free = run.released
        return [run.values[id(t)] for t in self.outputs]


class _Run:
    """The state of one execution of a Graph: values by tensor id and where their memory comes from."""

    def __init__(self, graph, arrays, training, free):
        self.graph = graph
        self.training = training
        self.tape = active_tape()
        self.values = {id(t): a for t, a in zip(graph.inputs, arrays)}
        self.free = free  # shape -> buffers released by the previous run
        self.released = {}  # shape -> buffers released by this run
        self.owned = {}  # id(tensor) -> the recycled buffer it lives in
        self.concat_bufs = {}  # id(concat node) -> its output buffer, from when its first input is placed
        self.placed = set()  # ids of concatenation inputs already written into their slice
        self.pinned = []  # arrays a tape record may hold on to: their buffers are never recycled
        self.fused = set()  # ids of max-pool nodes already computed with the convolution before them

    def buffer_for(self, t, shape):
        shape = tuple(shape)
        if id(t) not in self.graph._pooled:
            return np.empty(shape, np.float32)
        # This run's released buffers first (fewer buffers held), then last run's.
        stack = self.released.get(shape) or self.free.get(shape)
        self.owned[id(t)] = stack.pop() if stack else np.empty(shape, np.float32)
        return self.owned[id(t)]

    def release(self, tensor_ids):
        for gone in tensor_ids:
            self.values.pop(gone, None)
            buf = self.owned.pop(gone, None)
            # Recycle only if nothing still alive views it (e.g. a Reshape of it).
            if buf is not None and not any(np.may_share_memory(buf, v) for v in [*self.values.values(), *self.pinned]):
                self.released.setdefault(buf.shape, []).append(buf)

    def compute(self, node):
        """Run one node (or a convolution and the max pool after it); its outputs go into values."""
        args = [self.values[id(t)] for t in node.inputs]
        layer_args = args if node.input_structure else args[0]
        if self.tape is not None and node.layer._records_on(self.tape, args):
            # This call keeps its inputs for backward and makes its own outputs.
            self.pinned.extend(args)
            result, produced = node.layer(layer_args, training=self.training, **node.kwargs), node
        elif id(node) in self.graph._assembled:
            result, produced = self.concatenate(node, args), node
        else:
            pool = self.graph._conv_pools.get(id(node))
            produced = node if pool is None else pool
            t = produced.outputs[0]

            def out_shape():
                shape = node.layer.compute_output_shape(tuple(args[0].shape))
                return shape if pool is None else pool.layer.compute_output_shape(shape)

            out = None
            if id(t) in self.graph._slices:
                cnode, lo, hi = self.graph._slices[id(t)]
                shape = out_shape()
                if id(cnode) not in self.concat_bufs:
                    self.concat_bufs[id(cnode)] = self.buffer_for(cnode.outputs[0],
                                                                  shape[:-1] + (cnode.outputs[0].shape[-1],))
                out = self.concat_bufs[id(cnode)][..., lo:hi]
                if out.shape != tuple(shape):  # inputs of unexpected sizes: let the layers raise
                    out = None
            elif id(t) in self.graph._pooled:
                out = self.buffer_for(t, out_shape())
            kwargs = node.kwargs if out is None else dict(node.kwargs, out=out)
            if pool is not None:
                kwargs = dict(kwargs, pool=pool.layer)
                self.fused.add(id(pool))
            result = node.layer(layer_args, training=self.training, **kwargs)
            if out is not None and result is out and id(t) in self.graph._slices:
                self.placed.add(id(t))
        for t, r in zip(produced.outputs, flatten(result)):
            self.values[id(t)] = r

    def concatenate(self, node, args):
        """A channel concatenation into its buffer; inputs not already written in place are copied in."""
        buf = self.concat_bufs.pop(id(node), None)
        rest = args[0].shape[:-1]
        if (any(a.ndim != len(rest) + 1 or a.shape[:-1] != rest for a in args)
                or sum(a.shape[-1] for a in args) != node.outputs[0].shape[-1]
                or buf is not None and buf.shape[:-1] != rest):
            return node.layer(args)  # raises Concatenate's own error about the shapes
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
