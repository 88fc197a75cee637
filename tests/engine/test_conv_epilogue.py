"""Convolutions fused at inference with their BatchNormalization, residual Add and ReLU/ReLU6
(conv_epilogue.py, the plan's epilogue chains): each fused model checked against the same layers
run one at a time, and the kernels against numpy."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.kernels import depthwise
from tlkit.engine.kernels import epilogue
from tlkit.engine.layers import padding as padding_layers
from tlkit.engine.tape import GradientTape

from gradcheck import numeric
from test_depthwise_layers import reference_depthwise


def randomize_batch_norms(model, rng):
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.standard_normal(n), rng.standard_normal(n),
                               rng.uniform(0.3, 3, n)])


def one_layer_at_a_time(model, x):
    """The model's output with every layer called alone (nothing fused, nothing planned)."""
    values = {id(model.inputs[0]): x}
    for layer in model.layers[1:]:
        node = layer._inbound_nodes[-1]
        args = [values[id(t)] for t in node.inputs]
        values[id(node.outputs[0])] = layer(args if node.input_structure else args[0], training=False)
    return values[id(model.outputs[0])]


def residual_model(rng):
    """MobileNetV2's inverted residual (conv -> BN -> ReLU6, depthwise -> BN -> ReLU6, conv -> BN -> Add)
    then ResNet's (conv -> BN -> Add -> ReLU)."""
    inp = tlkit.Input((10, 10, 4))
    x = L.Conv2D(12, 1, use_bias=False, name="expand")(inp)
    x = L.ReLU(6.0, name="expand_relu")(L.BatchNormalization(name="expand_bn")(x))
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = L.ReLU(6.0, name="dw_relu")(L.BatchNormalization(name="dw_bn")(x))
    x = L.Conv2D(4, 1, use_bias=True, name="project")(x)
    x = L.Add(name="add")([inp, L.BatchNormalization(name="project_bn")(x)])
    y = L.Conv2D(4, 3, padding="same", name="conv3")(x)
    y = L.Add(name="add2")([L.BatchNormalization(name="conv3_bn")(y), x])
    out = L.Activation("relu", name="out")(y)
    model = tlkit.Model(inp, out)
    randomize_batch_norms(model, rng)
    return model


def test_conv_bn_add_relu_chains_match_the_layers_alone(rng, monkeypatch):
    model = residual_model(rng)
    x = rng.standard_normal((3, 10, 10, 4)).astype(np.float32) * 3  # large enough for ReLU6 to clip
    expected = one_layer_at_a_time(model, x)
    assert expected.max() > 0 and (expected == 0).any()
    chains = {model._graph.plan.fused[k][0].layer.name: [(kind, n.layer.name) for kind, n, _ in c]
              for k, c in model._graph.plan.epilogues.items()}
    assert chains == {"expand_bn": [("clip", "expand_relu")], "dw_bn": [("clip", "dw_relu")],
                      "project_bn": [("add", "add")], "conv3_bn": [("add", "add2"), ("clip", "out")]}
    for name in ("BatchNormalization", "ReLU", "Add", "Activation"):  # none of them may run on its own
        monkeypatch.setattr(getattr(L, name), "call", lambda *a, **k: pytest.fail("a fused layer ran alone"))
    for _ in range(2):  # the second call reuses the folded weights and the recycled buffers
        np.testing.assert_allclose(model.predict_on_batch(x), expected, rtol=1e-4, atol=1e-4)


def test_folded_weights_follow_every_write(rng):
    model = residual_model(rng)
    x = rng.standard_normal((4, 10, 10, 4)).astype(np.float32)
    model.compile("sgd", "mse")  # an optimizer step and BN's moving statistics write in place
    model.fit(x, rng.standard_normal((4, 10, 10, 4)).astype(np.float32), epochs=1, batch_size=4, verbose=0)
    np.testing.assert_allclose(model.predict_on_batch(x), one_layer_at_a_time(model, x), rtol=1e-4, atol=1e-4)
    model.trainable = False  # frozen: the folded weights are kept between calls
    model.predict_on_batch(x)
    model.get_layer("dw_bn").set_weights([w * 1.5 for w in model.get_layer("dw_bn").get_weights()])
    model.get_layer("project").set_weights([w * 0.5 for w in model.get_layer("project").get_weights()])
    np.testing.assert_allclose(model.predict_on_batch(x), one_layer_at_a_time(model, x), rtol=1e-4, atol=1e-4)
    model.trainable = True
    model.fit(x, rng.standard_normal((4, 10, 10, 4)).astype(np.float32), epochs=1, batch_size=4, verbose=0)
    np.testing.assert_allclose(model.predict_on_batch(x), one_layer_at_a_time(model, x), rtol=1e-4, atol=1e-4)


def test_a_frozen_chain_still_passes_gradients_to_its_residual(rng):
    """A frozen conv on an input that needs no gradient, whose Add's other input needs one: the Add
    and a trainable BatchNormalization must stay on the tape, so they are not fused."""
    a, b = tlkit.Input((6, 6, 3)), tlkit.Input((6, 6, 3))
    frozen = L.Conv2D(3, 3, padding="same", use_bias=False, name="frozen")
    frozen.trainable = False
    y = L.Add()([L.BatchNormalization(name="bn")(frozen(a)), L.Conv2D(3, 1, name="trained")(b)])
    model = tlkit.Model([a, b], y)
    randomize_batch_norms(model, rng)
    xa, xb = (rng.standard_normal((2, 6, 6, 3)).astype(np.float32) for _ in range(2))
    projection = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    with GradientTape() as tape:  # inference mode (training=False) under a tape
        out = model([xa, xb], training=False)
    grads, _ = tape.backprop([out], [projection], sources=[])
    kernel, gamma = model.get_layer("trained").kernel, model.get_layer("bn").gamma
    for variable in (kernel, gamma):
        idx, numeric_grad = numeric(lambda: model.predict_on_batch([xa, xb]), variable.value, projection)
        np.testing.assert_allclose(grads[id(variable)][1].reshape(-1)[idx], numeric_grad, rtol=2e-2, atol=2e-2)


def test_grouped_conv_folds_its_batch_norm(rng):
    inp = tlkit.Input((6, 6, 4))
    x = L.Conv2D(6, 3, padding="same", groups=2, name="grouped")(inp)
    model = tlkit.Model(inp, L.ReLU(6.0)(L.BatchNormalization()(x)))
    randomize_batch_norms(model, rng)
    x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32) * 3
    np.testing.assert_allclose(model.predict_on_batch(x), one_layer_at_a_time(model, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strides", [(2, 2), (2, 3)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_strided_1x1_convs_with_their_chains(rng, strides, padding):
    """ResNet's shortcut: two strided 1x1 convs of one input, BN folded, the Add and ReLU in the second's
    pass, against the layers one at a time."""
    inp = tlkit.Input((7, 9, 5))
    shortcut = L.BatchNormalization(name="short_bn")(L.Conv2D(6, 1, strides, padding, name="short")(inp))
    y = L.BatchNormalization(name="main_bn")(L.Conv2D(6, 1, strides, padding, name="main")(inp))
    model = tlkit.Model(inp, L.Activation("relu", name="out")(L.Add(name="add")([y, shortcut])))
    randomize_batch_norms(model, rng)
    model.trainable = False
    chains = [[(kind, n.layer.name) for kind, n, _ in c] for c in model._graph.plan.epilogues.values()]
    assert chains == [[("add", "add"), ("clip", "out")]]
    x = rng.standard_normal((2, 7, 9, 5)).astype(np.float32) * 3
    expected = one_layer_at_a_time(model, x)
    assert expected.shape == (2, -(-7 // strides[0]), -(-9 // strides[1]), 6) and (expected == 0).any() and expected.max() > 0
    np.testing.assert_allclose(model.predict_on_batch(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding", [((0, 1), (0, 1)), ((2, 0), (1, 3))])
@pytest.mark.parametrize("parallel_bytes", [padding_layers.PARALLEL_COPY_BYTES, 0])  # image by image on the threads
def test_zero_padding_into_a_recycled_buffer(rng, monkeypatch, padding, parallel_bytes):
    monkeypatch.setattr(padding_layers, "PARALLEL_COPY_BYTES", parallel_bytes)
    inp = tlkit.Input((9, 8, 5))
    x = L.ZeroPadding2D(padding, name="pad")(inp)
    # 'same': a conv that does not absorb the padding (a 'valid' one reads the zeros in place and the
    # plan skips the copy: test_depthwise_padding_fold.py), so the padded copy is made.
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw")(x)
    model = tlkit.Model(inp, L.ReLU(6.0)(L.BatchNormalization()(x)))
    randomize_batch_norms(model, rng)
    assert id(model.get_layer("pad").output) in model._graph.plan.pooled
    assert not model._graph.plan.absorbed
    for _ in range(3):
        x = rng.standard_normal((2, 9, 8, 5)).astype(np.float32) * 3
        np.testing.assert_allclose(model.predict_on_batch(x), one_layer_at_a_time(model, x), rtol=1e-4, atol=1e-4)
        assert model._graph._free  # the next call writes into these: no stale value may stay
        for buf in model._graph._free:
            buf.fill(np.nan)


@pytest.mark.parametrize("strides,padding,dilation", [((1, 1), "same", (1, 1)), ((1, 1), "valid", (1, 1)),
                                                      ((1, 1), "same", (2, 1)), ((2, 2), "same", (1, 1)),
                                                      ((2, 2), "valid", (1, 1))])
@pytest.mark.parametrize("row_kernel_channels,block_floats", [(0, 1024), (64, 1024), (64, 13)])
def test_depthwise_bias_clip_and_output_buffer(rng, monkeypatch, strides, padding, dilation, row_kernel_channels,
                                               block_floats):
    """Both forward kernels (per pixel; stride-1 rows in blocks of columns, the last block short)."""
    monkeypatch.setattr(depthwise, "ROW_KERNEL_MAX_CHANNELS", row_kernel_channels)
    monkeypatch.setattr(depthwise, "BLOCK_FLOATS", block_floats)
    x = rng.standard_normal((2, 9, 8, 6)).astype(np.float32) * 2
    kernel = rng.standard_normal((5, 5, 6, 1)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    expected = np.clip(reference_depthwise(x, kernel, strides, padding, dilation) + bias, 0, 6)
    out = np.full(expected.shape, np.nan, np.float32)
    y = depthwise.depthwise_forward(x, kernel, strides, padding, dilation, bias=bias, clip=(0.0, 6.0), out=out)
    assert y is out
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="out must be"):
        depthwise.depthwise_forward(x, kernel, strides, padding, out=out[:1])


@pytest.mark.parametrize("parallel_min", [0, 1 << 30])  # the multi-threaded and the single-threaded kernel
def test_add_residual_clip_matches_numpy(rng, monkeypatch, parallel_min):
    monkeypatch.setattr(epilogue, "PARALLEL_MIN_ELEMENTS", parallel_min)
    y, r = rng.standard_normal((2, 50, 7)).astype(np.float32) * 5
    for residual, low, high in ((r, 0.0, 6.0), (r, None, None), (None, 0.0, None)):
        expected = np.clip(y + (0 if residual is None else residual), low, high)
        np.testing.assert_allclose(epilogue.add_residual_clip(y.copy(), residual, low, high), expected, rtol=1e-6)


@pytest.mark.parametrize("tile_bytes", [epilogue.TILE_BYTES, 7 * 4 * 5])  # one tile; tiles of 5 rows, the last short
@pytest.mark.parametrize("min_split_flops", [0, 1 << 60])  # runs of tiles shared by the threads; all on the caller
def test_pointwise_conv_matches_numpy(rng, monkeypatch, tile_bytes, min_split_flops):
    monkeypatch.setattr(epilogue, "TILE_BYTES", tile_bytes)
    monkeypatch.setattr(epilogue, "MIN_SPLIT_FLOPS", min_split_flops)
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32) * 3
    w, b = rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    r = rng.standard_normal((2, 4, 6, 7)).astype(np.float32)
    product = np.einsum("nhwc,cf->nhwf", x.astype(np.float64), w)
    for bias, residual, low, high in ((b, r, 0.0, 6.0), (None, None, None, None), (b, None, 0.0, None)):
        expected = np.clip(product + (0 if bias is None else bias) + (0 if residual is None else residual), low, high)
        out = np.full(expected.shape, np.nan, np.float32)
        y = epilogue.pointwise_conv(x, w, bias, residual, low, high, out=out)
        assert y is out
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="out must be"):
        epilogue.pointwise_conv(x, w, out=out[:1])
