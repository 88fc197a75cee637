"""Inference on inputs of one shape as a list of steps compiled once, replayed call after call.

Why: the plan's per-node path (Execution.compute -> Layer.__call__ -> the layer's call -> the
kernel's argument checks) costs 10-25 us of Python a node, paid again for every group of images
(batch_split.py) and every call at batch 1, where a SqueezeNet node's kernels take 0.05-1 ms. A
Program runs one call through an Execution (the plan's buffers, channel slices and fused pairs) and
keeps, per node, a step that repeats what that call did with everything fixed by the input shape decided once:
its output buffer, the concatenation copies still needed, the keywords of the layer's call. Conv2D
(with its fused max pool) and MaxPooling2D steps call the layer's own ``call`` straight, past
Layer.__call__ (its checks done once per shape). Later calls on inputs of the same shapes replay the steps.

What a replay still reads at every call, so it computes what the layers' own calls would: the
weights (``set_weights`` assigns in place; a replaced kernel array or Variable is read too), the
trainable flag (a frozen conv's cached Winograd filter, ``Conv2D._winograd_filter``), the activation
(anything but ReLU / linear goes through the whole layer call), whether a step runs on one thread
(``small_steps.runs_alone``) and every route choice inside the layers' calls and kernel functions.
An inverted-residual block is a step through ``inverted_residuals.run`` (its own checks, each call);
a ZeroPadding2D that its reader absorbs is no step (the reader reads the padding's input).

    outputs = run(graph._programs, slot, graph, arrays)   # compiled at the second call on these shapes
"""
import numpy as np

from tlkit.engine import conv_steps, inverted_residuals, small_steps
from tlkit.engine.inference_plan import Execution, is_same_view
from tlkit.engine.layers.conv2d import Conv2D
from tlkit.engine.layers.pooling import MaxPooling2D
from tlkit.engine.symbolic import flatten
from tlkit.engine.tape import active_tape
from tlkit.utils import threads

# False: every call through an Execution, nothing compiled (tests and the A/B scripts take both sides).
ENABLED = True


def key(arrays):
    """What a program is compiled for: the inputs' shapes and dtypes, tlkit's thread count and ENABLED."""
    return tuple((a.shape, a.dtype) for a in arrays), threads.num_threads(), ENABLED


def applies(arrays, training):
    """Whether a call may run as a program: inference with nothing recording, on numpy arrays."""
    return not training and active_tape() is None and all(isinstance(a, np.ndarray) for a in arrays)


class Program:
    """A graph's inference on inputs of ``key``'s shapes: ``steps`` (each ``step(vals)``, vals the
    list of the run's arrays by tensor index) and ``outputs``, those of the compiling call. ``steps``
    is None while ``warming`` and when ENABLED is False: each run is then an Execution."""

    def __init__(self, graph, program_key):
        self.graph, self.key = graph, program_key
        self.steps, self.vals, self.out_index, self.dynamic, self.copied = None, [], [], (), []
        self.free = []  # flat buffers of the last Execution, or those the steps write into
        self.outputs = None
        self.warming = False  # steps not tried yet: the next call on these shapes compiles them

    @classmethod
    def compile(cls, graph, arrays, free=(), steps=True):
        """The program for inputs like ``arrays``, after running the call on them (``outputs``).
        ``free``: flat float32 buffers the run may reuse (a previous program's). ``steps`` False: the
        call only runs through an Execution, the steps are compiled at the next call."""
        program = cls(graph, key(arrays))
        program.warming = ENABLED and not steps
        run = Execution(graph.plan, graph.inputs, arrays, False, list(free))
        index = {id(t): i for i, t in enumerate(graph.inputs)}
        vals = list(arrays)
        steps, dynamic = [], set()
        run.scratch = conv_steps.Scratch()  # the direct conv steps' (conv_steps.py), kept by their closures
        compiling = ENABLED and not program.warming
        for node, release in zip(graph.nodes, graph._release_after):
            if not compiling:
                run.compute(node)
            elif (made := _compile_node(run, node, index, vals, dynamic)) is not _NOTHING:
                steps.append(made)
            run.release(release)
        program.outputs = [run.values[id(t)] for t in graph.outputs]
        if compiling:
            program.steps, program.vals = steps, vals
            program.out_index = [index[id(t)] for t in graph.outputs]
            program.dynamic = sorted(dynamic | set(range(len(graph.inputs))))
            for i in program.dynamic:  # held only while a run needs them
                vals[i] = None
            program.free = run.released + list(run.owned.values())  # for the slot's next program
            # Outputs in the program's memory, overwritten by its next run: copied when the caller keeps them.
            held = program.free + [v for i, v in enumerate(vals) if v is not None and i not in dynamic]
            program.copied = [i not in program.dynamic or any(np.may_share_memory(a, h) for h in held)
                              for i, a in zip(program.out_index, program.outputs)]
        else:
            program.free = run.released
        return program

    def run(self, arrays, own_outputs=False):
        """The graph's outputs on ``arrays`` (shapes and dtypes of ``key``). Outputs may live in the
        program's buffers, overwritten by its next run: ``own_outputs`` copies those out."""
        if self.steps is None:
            outputs, self.free = self.graph._run_once(arrays, False, self.free)
            return outputs
        vals = self.vals
        vals[:len(arrays)] = arrays
        try:
            for step in self.steps:
                step(vals)
        except _Stale:  # a block that now runs layer by layer: this call through an Execution, compiled again next
            for i in self.dynamic:
                vals[i] = None
            self.steps, self.warming = None, True
            outputs, self.free = self.graph._run_once(arrays, False, [])
            return outputs
        outputs = [vals[i] for i in self.out_index]
        for i in self.dynamic:
            vals[i] = None
        return self._owned(outputs) if own_outputs else outputs

    def first_outputs(self, own_outputs=False):
        """The outputs of the compiling call, as ``run`` returns them."""
        return self._owned(self.outputs) if own_outputs and self.steps is not None else self.outputs

    def _owned(self, outputs):
        return [a.copy() if copied else a for a, copied in zip(outputs, self.copied)]


def run(programs, slot, graph, arrays, own_outputs=False):
    """``graph``'s outputs on ``arrays`` by ``programs[slot]`` (``Program.run``), compiled on the second
    call on inputs of new shapes: the first runs through an Execution from the slot's last buffers,
    so the steps keep the buffers the plan settles on (compiled at once, they would also hold those
    the plan drops when a later output needs a larger one). A concurrent call on the same slot
    compiles a program of its own; the slot keeps one."""
    program = programs.pop(slot, None)
    same = program is not None and program.key == key(arrays)
    if same and not program.warming:
        outputs = program.run(arrays, own_outputs)
    else:
        program = Program.compile(graph, arrays, () if program is None else program.free, steps=same)
        outputs = program.first_outputs(own_outputs)
    programs[slot] = program
    return outputs


_NOTHING = object()  # a node whose work another step does (a fused consumer, an in-place concatenation)


class _Stale(Exception):
    """A step that can no longer run as compiled (an inverted-residual block the kernel now refuses)."""


def _compile_node(run, node, index, vals, dynamic):
    """Run ``node`` as the plan would and return its step, or _NOTHING."""
    plan = run.plan
    if id(node) in run.done:
        return _NOTHING
    block = plan.blocks.get(id(node))
    if block is not None and inverted_residuals.run(block, run):
        return _block_step(run, block, index, vals)
    if id(node) in plan.absorbed:  # its reader takes the unpadded input, which stands for the output
        run.compute(node)
        index[id(node.outputs[0])] = index[id(node.inputs[0])]
        return _NOTHING
    in_index = [index[id(t)] for t in node.inputs]
    args = [run.values[id(t)] for t in node.inputs]
    if id(node) in plan.assembled:
        buf = run.concatenate(node, args)  # the plan's own: checks the shapes, copies this first call
        copies, lo = [], 0
        for t, i, a in zip(node.inputs, in_index, args):
            if id(t) not in run.placed:
                copies.append((i, buf[..., lo:lo + a.shape[-1]]))
            lo += a.shape[-1]
        index[id(node.outputs[0])] = len(vals)
        vals.append(buf)
        run.values[id(node.outputs[0])] = buf
        return _copies_step(copies) if copies else _NOTHING
    produced, out, kwargs = run.prepare(node, args)
    out_index = list(range(len(vals), len(vals) + len(produced.outputs)))
    vals.extend([None] * len(out_index))
    for t, i in zip(produced.outputs, out_index):
        index[id(t)] = i
    layer, shapes = node.layer, tuple(a.shape for a in args)
    residuals = [None if other is None else index[id(other)] for _, _, other in plan.epilogues.get(id(node), ())]
    call = _layer_call(run.plan, node, in_index, out_index, kwargs, residuals)
    if type(layer) is Conv2D and layer.groups == 1 and out is not None and set(kwargs) <= {"training", "out", "pool"}:
        layer._check_input_shapes(list(shapes))  # once per shape, as Layer.__call__ would at every call
        step = _conv_step(run.plan, node, in_index[0], out_index[0], shapes, kwargs, call)
        step = conv_steps.direct_step(run.plan, node, in_index[0], out_index[0], args[0], kwargs["out"],
                                      kwargs.get("pool"), run.scratch, step) or step
    elif type(layer) is MaxPooling2D and out is not None and set(kwargs) <= {"training", "out"}:
        layer._check_input_shapes(list(shapes))
        step = _pool_step(run.plan, node, in_index[0], out_index[0], shapes, out)
    else:
        step = call
        dynamic.update(out_index)
    step(vals)
    if step is not call:  # what Layer.__call__ records of a call, recorded once per shape
        layer._last_output_shape = (None,) + tuple(vals[out_index[0]].shape[1:])
    if id(produced.outputs[0]) in plan.slices and is_same_view(vals[out_index[0]], out):
        run.placed.add(id(produced.outputs[0]))
        call.place = True  # later calls that return another array copy it into the slice
    for t, i in zip(produced.outputs, out_index):
        run.values[id(t)] = vals[i]
    return step


def _copies_step(copies):
    """A concatenation's inputs that are not written in place, copied into their channel slices."""
    def step(vals):
        for i, part in copies:
            part[...] = vals[i]
    return step


def _layer_call(plan, node, in_index, out_index, kwargs, residuals=()):
    """A step calling the layer with the plan's keywords (built once), as Execution.compute does;
    ``residuals``: the vals index of each epilogue step's residual (None for a clip)."""
    layer, structure, out = node.layer, node.input_structure, kwargs.get("out")
    chain = [(kind, fused) for kind, fused, _ in kwargs.get("epilogue", ())]

    def step(vals):
        args = [vals[i] for i in in_index]
        layer_args = args if structure else args[0]
        kw = kwargs
        if chain:
            kw = dict(kwargs, epilogue=[(kind, fused, None if i is None else vals[i])
                                        for (kind, fused), i in zip(chain, residuals)])
        if small_steps.runs_alone(plan.alone, node, tuple(a.shape for a in args)):
            result = small_steps.call_alone(layer, layer_args, kw)
        else:
            result = layer(layer_args, **kw)
        results = flatten(result)
        if step.place and not is_same_view(results[0], out):
            out[...] = results[0]
            results = [out, *results[1:]]
        for i, r in zip(out_index, results):
            vals[i] = r
    step.place = False
    return step


def _block_step(run, block, index, vals):
    """An inverted-residual block through inverted_residuals.run, on the program's values, into the
    buffer its first run got."""
    out = run.values[id(block.output)]
    index[id(block.output)] = len(vals)
    vals.append(out)
    view = _BlockRun(run.plan, index, out)
    x_index = index.get(id((block.expand or block.depthwise)[0].inputs[0]))
    others = [other for kind, _, other in block.project[2] if kind == "add"]
    residual_index = index[id(others[0])] if others else None

    def step(vals):
        if x_index is not None and inverted_residuals.replay(
                block, vals[x_index], None if residual_index is None else vals[residual_index], out):
            return
        view.values.vals = vals
        if not inverted_residuals.run(block, view):
            raise _Stale
    return step


class _BlockRun:
    """What inverted_residuals.run uses of an Execution, over a program's vals: values by tensor id, its
    output buffer, the plan."""
    training = False

    def __init__(self, plan, index, out):
        self.plan, self.out, self.done = plan, out, set()
        self.values = _Values(index)

    def buffer_for(self, tensor, shape):
        if tuple(shape) != self.out.shape:
            raise _Stale
        return self.out


class _Values:
    """vals[index[id(tensor)]] as a dict by tensor id."""

    def __init__(self, index):
        self.index, self.vals = index, None

    def __getitem__(self, tensor_id):
        return self.vals[self.index[tensor_id]]

    def __setitem__(self, tensor_id, value):
        self.vals[self.index[tensor_id]] = value


def _conv_step(plan, node, x_index, y_index, shapes, kwargs, call):
    """A Conv2D (and the max pool fused with it) by its own ``call`` into the plan's buffer, past
    Layer.__call__; the whole layer call (``call``) when its activation or kernel shape changed since."""
    layer, out, pool = node.layer, kwargs["out"], kwargs.get("pool")
    w_shape = tuple(layer.kernel.value.shape)

    def compute(x):
        return layer.call(x, out=out, pool=pool)

    def step(vals):
        if (layer.activation not in ("relu", "linear") or "_activation_function" in layer.__dict__
                or layer.kernel.value.shape != w_shape):
            call(vals)
        else:
            vals[y_index] = _maybe_alone(plan, node, shapes, compute, vals[x_index])
    return step


def _pool_step(plan, node, x_index, y_index, shapes, out):
    """A MaxPooling2D by its own ``call`` into the plan's buffer, past Layer.__call__."""
    layer = node.layer

    def compute(x):
        return layer.call(x, out=out)

    def step(vals):
        vals[y_index] = _maybe_alone(plan, node, shapes, compute, vals[x_index])
    return step


def _maybe_alone(plan, node, shapes, compute, x):
    """compute(x), on this thread alone when small_steps says the node's call runs alone."""
    if threads.num_threads() > 1 and small_steps.runs_alone(plan.alone, node, shapes):
        return small_steps.call_alone(compute, x, {})
    return compute(x)
