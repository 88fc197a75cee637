"""Inference writes outputs into buffers the Functional graph provides: Concatenate inputs straight
into slices of its output (no copy), other intermediates into buffers recycled between calls.
Checked against the plain path (each layer allocates its own output) and plain numpy. A frozen
prefix under a gradient tape runs the same way, and never recycles what the tape keeps."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.kernels import conv, pool
from tlkit.engine.tape import GradientTape


def plain_run(graph, arrays):
    """The graph's nodes called one by one, each layer making its own output: the reference."""
    values = {id(t): a for t, a in zip(graph.inputs, arrays)}
    for node in graph.nodes:
        args = [values[id(t)] for t in node.inputs]
        result = node.layer(args if node.input_structure else args[0], **node.kwargs)
        for t, r in zip(node.outputs, tlkit.engine.symbolic.flatten(result)):
            values[id(t)] = r
    return [values[id(t)] for t in graph.outputs]


def numpy_conv(x, w, b, stride=1, pad=0):
    """Direct NHWC correlation with symmetric zero padding, float64."""
    x = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw, _, f = w.shape
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = np.zeros((x.shape[0], oh, ow, f)) + b
    for i in range(kh):
        for j in range(kw):
            y += x[:, i:i + stride * oh:stride, j:j + stride * ow:stride] @ w[i, j]
    return y


@pytest.mark.parametrize("k, stride, padding, cin", [(1, 1, "valid", 8), (3, 1, "same", 16), (3, 2, "valid", 3),
                                                     (3, 1, "same", 4)])
def test_conv_writes_into_a_channel_slice_and_nothing_else(rng, k, stride, padding, cin):
    # (3, 1, same, 16) takes the Winograd route, the others im2col or the 1x1 product.
    x = rng.standard_normal((2, 12, 12, cin)).astype(np.float32)
    w = rng.standard_normal((k, k, cin, 16)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    expected = np.maximum(numpy_conv(x, w, b, stride, (k // 2) if padding == "same" else 0), 0)
    buf = np.full(expected.shape[:3] + (40,), 7.0, np.float32)
    got = conv.conv2d_forward(x, w, b, (stride, stride), padding, relu=True, out=buf[..., 8:24])
    assert np.shares_memory(got, buf) and got.shape == expected.shape
    np.testing.assert_allclose(buf[..., 8:24], expected, rtol=1e-4, atol=1e-4)
    assert (buf[..., :8] == 7).all() and (buf[..., 24:] == 7).all()


def test_conv_out_that_is_no_channel_slice_still_gets_the_result(rng):
    x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    w = rng.standard_normal((1, 1, 4, 3)).astype(np.float32)
    flat = np.zeros(2 * 6 * 6 * 5, np.float32)
    out = flat.reshape(2, 6, 6, 5)[..., 2:]  # its base is the 1-D array: computed, then copied in
    conv.conv2d_forward(x, w, out=out)
    np.testing.assert_allclose(out, numpy_conv(x, w, 0), rtol=1e-5, atol=1e-5)
    assert (flat.reshape(2, 6, 6, 5)[..., :2] == 0).all()


def test_bad_out_says_what_is_wrong(rng):
    x = np.zeros((1, 4, 4, 2), np.float32)
    w = np.zeros((1, 1, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"out must be a float32 array of shape \(1, 4, 4, 3\)"):
        conv.conv2d_forward(x, w, out=np.zeros((1, 4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="channels must be contiguous"):
        conv.conv2d_forward(x, w, out=np.zeros((1, 4, 4, 6), np.float32)[..., ::2])
    with pytest.raises(ValueError, match="C-contiguous float32 array of shape"):
        pool.max_pool2d_forward(x, (2, 2), (2, 2), "valid", with_argmax=False, out=np.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match="inference"):
        pool.max_pool2d_forward(x, (2, 2), (2, 2), "valid", out=np.zeros((1, 2, 2, 2), np.float32))


def test_max_pool_writes_into_out(rng):
    x = rng.standard_normal((2, 9, 9, 5)).astype(np.float32)
    out = np.empty((2, 4, 4, 5), np.float32)
    y, _ = pool.max_pool2d_forward(x, (3, 3), (2, 2), "valid", with_argmax=False, out=out)
    assert y is out
    expected = np.max([x[:, i:i + 7:2, j:j + 7:2] for i in range(3) for j in range(3)], axis=0)
    np.testing.assert_array_equal(out, expected)


def fire_net(extra_outputs=False):
    """Two fire modules and a pool; optionally also a Reshape of an inner activation as an output
    (it views a buffer the graph would otherwise recycle) and a concat of a graph input."""
    inp = tlkit.Input((9, 9, 4))
    x = L.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = L.MaxPooling2D(2, strides=1, padding="same")(x)
    for i in range(2):
        s = L.Conv2D(4, 1, activation="relu")(x)
        x = L.Concatenate()([L.Conv2D(6, 1, activation="relu")(s),
                             L.Conv2D(6, 3, padding="same", activation="sigmoid")(s)])
    outputs = [L.MaxPooling2D(2)(x)]
    if extra_outputs:
        outputs.append(L.Reshape((-1,))(s))
        outputs.append(L.Concatenate()([inp, L.Conv2D(2, 1)(inp)]))
    return tlkit.Model(inp, outputs)


@pytest.mark.parametrize("extra_outputs", [False, True])
def test_graph_inference_matches_plain_execution_and_keeps_returned_arrays(rng, extra_outputs):
    model = fire_net(extra_outputs)
    graph = model._graph
    # Both expand convs of both fire modules write in place (and the conv concatenated to the input).
    assert len(graph.plan.slices) == (5 if extra_outputs else 4)
    x1, x2 = (rng.standard_normal((3, 9, 9, 4)).astype(np.float32) for _ in range(2))
    first = [o.copy() for o in tlkit.engine.symbolic.flatten(model.predict_on_batch(x1))]
    kept = tlkit.engine.symbolic.flatten(model.predict_on_batch(x1))
    second = tlkit.engine.symbolic.flatten(model.predict_on_batch(x2))  # recycles last call's buffers
    # The fused and plain paths round differently (ulps); a recycled or wrong buffer is off by O(1).
    close = dict(rtol=1e-5, atol=1e-5)
    for got, want in zip(second, plain_run(graph, [x2])):
        np.testing.assert_allclose(got, want, **close)
    for got, want in zip(kept, first):  # arrays handed out earlier are never reused
        np.testing.assert_allclose(got, want, **close)
    for got, want in zip(first, plain_run(graph, [x1])):
        np.testing.assert_allclose(got, want, **close)


def test_fire_module_output_matches_numpy(rng):
    inp = tlkit.Input((6, 6, 3))
    s = L.Conv2D(4, 1, activation="relu")(inp)
    model = tlkit.Model(inp, L.MaxPooling2D(2)(L.Concatenate()([L.Conv2D(5, 1, activation="relu")(s),
                                                              L.Conv2D(5, 3, padding="same", activation="relu")(s)])))
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    (ws, bs), (w1, b1), (w3, b3) = [layer.get_weights() for layer in model.layers if layer.weights]
    sq = np.maximum(numpy_conv(x, ws, bs), 0)
    cat = np.concatenate([np.maximum(numpy_conv(sq, w1, b1), 0), np.maximum(numpy_conv(sq, w3, b3, 1, 1), 0)], -1)
    expected = cat.reshape(2, 3, 2, 3, 2, 10).max(axis=(2, 4))
    for _ in range(2):
        np.testing.assert_allclose(model.predict_on_batch(x), expected, rtol=1e-4, atol=1e-5)


def test_gradients_through_the_fire_module_are_unchanged(rng):
    # Under a tape layers allocate their own outputs; inference must not have disturbed that.
    model = fire_net()
    x = rng.standard_normal((2, 9, 9, 4)).astype(np.float32)
    model.predict_on_batch(x)
    with GradientTape() as tape:
        y = model(x, training=True)
    grads = tape.backprop([y], [2 * y])  # d(sum y^2)/dy
    np.testing.assert_allclose(y, model.predict_on_batch(x), rtol=1e-6, atol=1e-6)
    assert {id(v) for v in model.trainable_weights} == set(grads)
    # Finite differences on one weight of the first expand3x3 conv.
    var = [v for v in model.trainable_weights if v.shape == (3, 3, 4, 6)][0]
    value = var.numpy()
    eps = 1e-2
    losses = []
    for sign in (1, -1):
        bumped = value.copy()
        bumped[1, 1, 0, 0] += sign * eps
        var.assign(bumped)
        losses.append(float((model.predict_on_batch(x).astype(np.float64) ** 2).sum()))
    var.assign(value)
    np.testing.assert_allclose(grads[id(var)][1][1, 1, 0, 0], (losses[0] - losses[1]) / (2 * eps), rtol=2e-2, atol=1e-3)


def test_frozen_prefix_under_a_tape_recycles_buffers_but_never_what_the_tape_keeps(rng):
    # frozen conv a -> trainable conv b; a frozen branch c -> d computed after b has the shape of a's
    # output, so it would take a's buffer if b's record did not pin it.
    inp = tlkit.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")
    b = L.Conv2D(4, 3, padding="same", name="b")
    c = L.Conv2D(4, 3, padding="same", activation="relu", name="c")
    d = L.Conv2D(4, 3, padding="same", name="d")
    model = tlkit.Model(inp, [L.Add()([b(a(inp)), d(c(inp))])])
    for layer in (a, c, d):
        layer.trainable = False
    graph = model._graph
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    with GradientTape() as tape:  # reference: the layers called by hand, no buffer ever shared
        y_ref = L.Add()([b(a(x)), d(c(x))])
    want = tape.backprop([y_ref], [dy])
    for step in range(3):  # later steps run with the buffers recycled from earlier ones
        with GradientTape() as tape:
            y = model(x, training=True)
        got = tape.backprop([y], [dy])
        np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
        assert set(got) == {id(b.kernel), id(b.bias)} == set(want)
        for key in want:
            np.testing.assert_allclose(got[key][1], want[key][1], rtol=1e-5, atol=1e-5)
    assert graph._free, "the frozen layers' outputs should have gone back to the pool"


def fused_pairs(model):
    graph = model._graph
    return sorted((n.layer.name, p.layer.name) for n in graph.nodes for p, _ in [graph.plan.fused.get(id(n), (None, None))] if p)


@pytest.mark.parametrize("shape, conv, pool", [
    ((17, 17, 3), dict(filters=8, kernel_size=3, strides=2, activation="relu"), dict(pool_size=3, strides=2)),
    ((15, 15, 3), dict(filters=5, kernel_size=3, padding="same"), dict(pool_size=2, padding="same")),
    ((14, 13, 16), dict(filters=24, kernel_size=3, padding="same", activation="relu"), dict(pool_size=2)),
])
def test_conv_then_max_pool_run_fused_and_match_the_layers_one_by_one(rng, shape, conv, pool):
    # Small windows take the direct fused kernel; the 16-channel 3x3 conv the Winograd one.
    inp = tlkit.Input(shape)
    y = L.MaxPooling2D(name="pool", **pool)(L.Conv2D(name="conv", **conv)(inp))
    model = tlkit.Model(inp, L.Conv2D(4, 1, name="after")(y))
    assert fused_pairs(model) == [("conv", "pool")]
    for _ in range(2):  # the second call runs in recycled buffers
        x = rng.standard_normal((3,) + shape).astype(np.float32)
        np.testing.assert_allclose(model.predict_on_batch(x), plain_run(model._graph, [x])[0], rtol=1e-4, atol=1e-4)


def test_conv_and_pool_stay_apart_when_fusing_would_change_or_lose_something(rng):
    inp = tlkit.Input((12, 12, 3))
    shared = L.Conv2D(4, 3, activation="relu", name="shared")(inp)  # a second consumer needs its output
    sig = L.Conv2D(4, 3, activation="sigmoid", name="sig")(inp)  # the fused kernels do ReLU or nothing
    returned = L.Conv2D(4, 3, name="returned")(inp)  # a model output must exist
    wide = L.Conv2D(16, 3, padding="same", name="wide")(tlkit.Input((12, 12, 16)))
    outputs = [L.MaxPooling2D(name="p1")(shared), L.Flatten()(shared), L.MaxPooling2D(name="p2")(sig),
               L.MaxPooling2D(name="p3")(returned), returned]
    model = tlkit.Model(inp, outputs)
    assert fused_pairs(model) == []
    x = rng.standard_normal((2, 12, 12, 3)).astype(np.float32)
    for got, want in zip(model.predict_on_batch(x), plain_run(model._graph, [x])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # A Winograd conv fuses only with a 2x2 stride-2 pool.
    assert not wide.node.layer.fuses_max_pool((None, 12, 12, 16), L.MaxPooling2D(3, strides=2))
    assert wide.node.layer.fuses_max_pool((None, 12, 12, 16), L.MaxPooling2D(2))


def test_a_max_pool_feeding_a_concatenation_gets_its_own_buffer(rng):
    # Pooling writes whole C-contiguous arrays only; it used to be handed a channel slice.
    inp = tlkit.Input((8, 8, 3))
    x = L.Conv2D(4, 1)(inp)
    model = tlkit.Model(inp, L.Concatenate()([L.MaxPooling2D(2)(x), L.Conv2D(2, 2, strides=2)(x)]))
    data = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict_on_batch(data), plain_run(model._graph, [data])[0], rtol=1e-5, atol=1e-5)


def test_squeezenet_fuses_conv1_with_pool1():
    from tlkit.zoo import SqueezeNet

    assert fused_pairs(SqueezeNet(weights=None, input_shape=(227, 227, 3))) == [("conv1", "pool1")]


def test_vgg16_fuses_each_block_s_last_conv_with_its_pool():
    from tlkit.zoo import VGG16

    model = VGG16(include_top=False, weights=None, input_shape=(128, 128, 3))  # block5: 8x8, Winograd
    assert fused_pairs(model) == [(f"block{b}_conv{3 if b > 2 else 2}", f"block{b}_pool") for b in range(1, 6)]
