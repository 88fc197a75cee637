"""The layer graph behind the Functional API: ordering, validation and execution. Where outputs
go at inference (buffers, channel slices, fused pairs) is the inference plan's business
(inference_plan.py); the graph orders the nodes, runs them and drops what no later node needs."""
from tlkit.engine import batch_split, compiled_steps, small_steps
from tlkit.engine.inference_plan import Execution, InferencePlan
from tlkit.engine.layers.input_layer import InputLayer
from tlkit.engine.symbolic import KerasTensor, flatten


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
        for t in self.outputs:  # read by the model's caller too: a layer producing it must not fuse it away
            t.read_by_caller = True
        self.nodes = self._order(model_name)
        self._release_after = self._last_uses()
        self.plan = InferencePlan(self.nodes, self.inputs, self.outputs)
        self._plain_free = []  # flat buffers released by the last run through an Execution (training, a tape)
        self._programs = {}  # compiled_steps.Program per thread slot of a run as groups of images, and "layers"
        self._image_bytes = ()  # batch_split.largest_image_bytes, once it is asked
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

    def run(self, arrays, training):
        if self._image_bytes == ():
            self._image_bytes = batch_split.largest_image_bytes(self)
        if batch_split.applies(self._image_bytes, arrays, training):
            return batch_split.run(arrays, self._run_group)
        with small_steps.session(arrays, training, id(self)):
            if compiled_steps.applies(arrays, training):
                return compiled_steps.run(self._programs, "layers", self, arrays, own_outputs=True)
            free, self._plain_free = self._plain_free, []  # this run's own pool: concurrent runs never share a buffer
            outputs, self._plain_free = self._run_once(arrays, training, free)
        return outputs

    @property
    def _free(self):
        """The flat buffers later inference calls write into: the pool of runs through an Execution and the
        layer route's compiled steps' (no stale value may leak from them)."""
        program = self._programs.get("layers")
        return self._plain_free + ([] if program is None else program.free)

    def _run_group(self, slot, arrays):
        """Inference on a group of images by thread slot ``slot``'s compiled steps. Outputs live in the
        slot's buffers until its next group: batch_split.run copies them out."""
        return compiled_steps.run(self._programs, slot, self, arrays)

    def _run_once(self, arrays, training, free):
        """(outputs, the buffers the run released) of one run of the nodes in order."""
        run = Execution(self.plan, self.inputs, arrays, training, free)
        for node, release in zip(self.nodes, self._release_after):
            run.compute(node)
            run.release(release)
        return [run.values[id(t)] for t in self.outputs], run.released
