"""Inference as compiled steps (tlkit/engine/compiled_steps.py): the same outputs as the plan's
per-node route, the layers called one by one and a float64 numpy run of the graph, on SqueezeNet at
odd image sizes with groups of images of two sizes on one thread; replays that see new weights, the
trainable flag and the activation; MobileNetV2's blocks, absorbed padding and epilogues, and layers
called through their own call; the layer route's outputs and concurrent calls."""
import numpy as np
import pytest

import tlkit
from tests.engine.test_inference_buffers import numpy_conv, plain_run
from tlkit import layers as L
from tlkit.engine import compiled_steps
from tlkit.engine.inference_plan import Execution
from tlkit.utils import threads
from tlkit.zoo import SqueezeNet

CLOSE = {"rtol": 1e-5, "atol": 1e-5}  # the routes round differently (ulps); a wrong buffer is off by O(1)


def numpy_max_pool(a, k, stride, same=False):
    if same:  # TF 'same': -inf padding at the bottom / right
        oh, ow = -(-a.shape[1] // stride), -(-a.shape[2] // stride)
        ph, pw = max((oh - 1) * stride + k - a.shape[1], 0), max((ow - 1) * stride + k - a.shape[2], 0)
        a = np.pad(a, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), constant_values=-np.inf)
    oh, ow = (a.shape[1] - k) // stride + 1, (a.shape[2] - k) // stride + 1
    return np.max([a[:, i:i + stride * oh:stride, j:j + stride * ow:stride] for i in range(k) for j in range(k)], 0)


def numpy_graph(graph, x):
    """The graph's nodes in float64 numpy: Conv2D (stride 1 'same' or 'valid', relu / linear / sigmoid),
    MaxPooling2D, Concatenate, GlobalAveragePooling2D, Dense."""
    values = {id(graph.inputs[0]): x.astype(np.float64)}
    for node in graph.nodes:
        layer, args = node.layer, [values[id(t)] for t in node.inputs]
        if isinstance(layer, L.Conv2D):
            kernel, bias = layer.get_weights()
            pad = kernel.shape[0] // 2 if layer.padding == "same" else 0
            y = numpy_conv(args[0], kernel, bias, layer.strides[0], pad)
            y = {"relu": lambda v: np.maximum(v, 0), "linear": lambda v: v,
                 "sigmoid": lambda v: 1 / (1 + np.exp(-v))}[layer.activation](y)
        elif isinstance(layer, L.MaxPooling2D):
            y = numpy_max_pool(args[0], layer.pool_size[0], layer.strides[0], layer.padding == "same")
        elif isinstance(layer, L.Concatenate):
            y = np.concatenate(args, -1)
        elif isinstance(layer, L.GlobalAveragePooling2D):
            y = args[0].mean((1, 2))
        elif isinstance(layer, L.Dense):
            kernel, bias = layer.get_weights()
            y = args[0] @ kernel + bias
        else:
            pytest.fail(f"no numpy reference for {type(layer).__name__}")
        values[id(node.outputs[0])] = y
    return values[id(graph.outputs[0])]


def groups_on_one_thread(graph, x, sizes):
    """The groups route's per-group calls, each size on a thread slot of its own, on this thread alone."""
    before = threads.num_threads()
    threads.set_numba_threads(1)
    try:
        outs, i = [], 0
        for slot, size in enumerate(sizes):
            outs.append(graph._run_group(slot, [x[i:i + size]])[0].copy())
            i += size
        return np.concatenate(outs)
    finally:
        threads.set_numba_threads(before)


@pytest.fixture
def squeezenet():
    model = SqueezeNet(weights=None, input_shape=(71, 65, 3))  # odd sizes at every layer
    rng = np.random.default_rng(1)
    for layer in model.layers:  # biases too, so that a bias left out shows
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.uniform(-0.1, 0.1, bias.shape).astype(np.float32)])
    return model


def test_squeezenet_groups_match_the_plan_s_route_the_layers_and_numpy(rng, squeezenet, monkeypatch):
    graph = squeezenet._graph
    x = rng.standard_normal((7, 71, 65, 3)).astype(np.float32)  # groups of 4 and 3
    monkeypatch.setattr(compiled_steps, "ENABLED", False)
    per_node = groups_on_one_thread(graph, x, [4, 3])
    assert all(p.steps is None for p in graph._programs.values())
    monkeypatch.setattr(compiled_steps, "ENABLED", True)
    compiled = [groups_on_one_thread(graph, x, [4, 3])]  # through an Execution: the steps compile next time
    assert all(p.steps is None and p.warming for p in graph._programs.values())
    compiled.append(groups_on_one_thread(graph, x, [4, 3]))
    programs = list(graph._programs.values())
    assert len(programs) == 2 and all(p.steps for p in programs)
    for program in programs:
        for buf in program.free:
            buf.fill(np.nan)  # the replay writes into these: no stale value may stay
    compiled.append(groups_on_one_thread(graph, x, [4, 3]))  # replayed, not compiled again
    assert list(graph._programs.values()) == programs
    for got in compiled:
        np.testing.assert_allclose(got, per_node, **CLOSE)
    np.testing.assert_allclose(compiled[1], plain_run(graph, [x])[0], **CLOSE)
    want = numpy_graph(graph, x)
    np.testing.assert_allclose(compiled[2], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_replays_see_new_weights_the_trainable_flag_and_the_activation(rng, squeezenet):
    graph = squeezenet._graph
    x = rng.standard_normal((3, 71, 65, 3)).astype(np.float32)

    def check():
        got = groups_on_one_thread(graph, x, [3])
        want = numpy_graph(graph, x)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        return got

    check()  # through an Execution
    first = check()  # compiled
    program = graph._programs[0]
    expand = squeezenet.get_layer("fire5/expand3x3")  # Winograd: its transformed filter is cached when frozen
    squeeze = squeezenet.get_layer("fire9/squeeze1x1")
    kernel, bias = expand.get_weights()
    expand.set_weights([-kernel, bias])
    assert not np.allclose(check(), first)
    squeezenet.trainable = False  # the frozen filter is transformed once ...
    check()
    expand.kernel.assign(kernel * 0.5)  # ... and again when the weight changes
    squeeze.kernel.assign(squeeze.kernel.numpy() * 2)
    check()
    squeezenet.trainable = True
    expand.kernel.assign(kernel)
    check()
    squeeze.activation = "linear"
    check()
    expand.activation = "sigmoid"  # not a kernel's epilogue: the layer's own call
    check()
    assert graph._programs[0] is program  # all by replays of the same steps


def test_epilogues_blocks_absorbed_padding_and_layer_calls(rng, monkeypatch):
    from tests.engine.test_conv_epilogue import randomize_batch_norms, residual_model
    from tlkit.engine import inverted_residuals
    from tlkit.zoo import MobileNetV2

    # MobileNetV2 at an odd size: its stem and inverted-residual blocks as blocks, ZeroPadding2D read in
    # place by 'valid' depthwise convs, the last conv with its folded BatchNormalization and ReLU6 epilogue.
    mobile = MobileNetV2(weights=None, include_top=False, input_shape=(45, 37, 3), alpha=0.35)
    randomize_batch_norms(mobile, rng)
    assert mobile._graph.plan.blocks and mobile._graph.plan.absorbed and mobile._graph.plan.epilogues
    inp = tlkit.Input((13, 11, 3))
    s = L.Conv2D(6, 1, activation="relu")(inp)
    x = L.Concatenate()([L.Conv2D(4, 1, activation="relu")(s), L.Conv2D(5, 3, padding="same")(s)])
    x = L.MaxPooling2D(2, padding="same")(x)
    head = tlkit.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(x)))  # layer calls: the pooling and Dense
    residual = residual_model(rng)  # ResNet's conv -> BN -> Add -> ReLU
    inp = tlkit.Input((10, 10, 4))
    y = L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(inp))
    on_input = tlkit.Model(inp, L.ReLU()(L.Add()([y, inp])))  # the Add's other input: each call's own input
    randomize_batch_norms(on_input, rng)
    assert any(other is not None for chain in on_input._graph.plan.epilogues.values() for _, _, other in chain)
    for model, shape in ((mobile, (45, 37, 3)), (residual, (10, 10, 4)), (on_input, (10, 10, 4)), (head, (13, 11, 3))):
        graph = model._graph
        for call in range(4):  # through an Execution, compiled, replayed twice; new inputs each time
            xs = rng.standard_normal((4,) + shape).astype(np.float32) * 3
            got, want = groups_on_one_thread(graph, xs, [4]), plain_run(graph, [xs])[0]
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        assert graph._programs[0].steps
    np.testing.assert_allclose(got, numpy_graph(head._graph, xs), rtol=1e-4, atol=1e-5)
    # A block the kernel now refuses: this call through an Execution, the steps compiled again next time.
    graph, xs = mobile._graph, rng.standard_normal((4, 45, 37, 3)).astype(np.float32)
    want = plain_run(graph, [xs])[0]
    monkeypatch.setattr(inverted_residuals, "ENABLED", False)
    stale = groups_on_one_thread(graph, xs, [4])
    assert graph._programs[0].steps is None and graph._programs[0].warming
    again = [groups_on_one_thread(graph, xs, [4]) for _ in range(2)]
    assert graph._programs[0].steps
    for got in [stale, *again]:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_a_concatenation_s_inputs_are_written_in_place(rng):
    inp = tlkit.Input((9, 8, 5))
    s = L.Conv2D(6, 1, activation="relu")(inp)
    parts = [L.Conv2D(4, 1, activation="relu")(s), L.Conv2D(5, 3, padding="same", activation="relu")(s)]
    model = tlkit.Model(inp, L.Conv2D(3, 1)(L.Concatenate()(parts)))
    graph = model._graph
    x = rng.standard_normal((2, 9, 8, 5)).astype(np.float32)
    run = Execution(graph.plan, graph.inputs, [x], False, [])
    for node in graph.nodes:
        run.compute(node)
    assert run.placed == {id(t) for t in parts}  # the concatenation copied nothing
    np.testing.assert_allclose(run.values[id(graph.outputs[0])], numpy_graph(graph, x), rtol=1e-4, atol=1e-5)


def test_the_layer_route_s_outputs_are_the_caller_s(rng, squeezenet, monkeypatch):
    from tlkit.engine import batch_split

    monkeypatch.setattr(batch_split, "ENABLED", False)  # the layer-by-layer route, compiled too
    graph = squeezenet._graph
    xs = [rng.standard_normal((n, 71, 65, 3)).astype(np.float32) for n in (1, 1, 2, 2, 1, 1, 1)]
    got = [squeezenet.predict_on_batch(x) for x in xs]  # shapes change: compiled again in the same buffers
    assert graph._programs["layers"].steps  # the last call replayed: it must not write into what others returned
    for g, x in zip(got, xs):
        want = numpy_graph(graph, x)
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert not any(np.shares_memory(a, b) for i, a in enumerate(got) for b in got[i + 1:])


def test_concurrent_calls_never_share_a_program_s_buffers(rng, squeezenet, monkeypatch):
    import threading

    from tlkit.engine import batch_split

    monkeypatch.setattr(batch_split, "ENABLED", False)  # both threads on the layer route's one slot
    xs = [rng.standard_normal((1, 71, 65, 3)).astype(np.float32) for _ in range(2)]
    want = [squeezenet.predict_on_batch(x).copy() for x in xs]
    got, failures = [[], []], []

    def calls(i):
        try:
            for _ in range(6):
                got[i].append(squeezenet.predict_on_batch(xs[i]))
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(e)

    workers = [threading.Thread(target=calls, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not failures
    for i in range(2):
        for g in got[i]:
            np.testing.assert_allclose(g, want[i], **CLOSE)
