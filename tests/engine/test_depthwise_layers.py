"""DepthwiseConv2D, SeparableConv2D and ReLU: numpy references, finite differences, torch's grouped
convolution (optional), BatchNormalization folded into convolutions at inference, frozen BN."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.kernels.geometry import pads
from tlkit.engine.kernels import depthwise

from gradcheck import check


def reference_depthwise(x, kernel, strides, padding, dilation=(1, 1)):
    """Plain numpy: pad as TF does, then sum the taps; output channel c*M + m."""
    kh, kw, ch, m = kernel.shape
    (t, b), (lt, r) = (pads(x.shape[1], kh, strides[0], padding, dilation[0]),
                       pads(x.shape[2], kw, strides[1], padding, dilation[1]))
    xp = np.pad(x.astype(np.float64), ((0, 0), (t, b), (lt, r), (0, 0)))
    oh = (xp.shape[1] - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    ow = (xp.shape[2] - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    y = np.zeros((x.shape[0], oh, ow, ch, m))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dilation[0]:, j * dilation[1]:][:, :oh * strides[0]:strides[0], :ow * strides[1]:strides[1]]
            y += patch[..., None] * kernel[i, j]
    return y.reshape(x.shape[0], oh, ow, ch * m)


GEOMETRIES = [((1, 1), "same", 1, (1, 1)), ((2, 2), "same", 1, (1, 1)), ((2, 1), "valid", 2, (1, 1)),
              ((1, 1), "same", 3, (2, 2)), ((2, 2), "valid", 1, (1, 1))]


@pytest.mark.parametrize("strides,padding,multiplier,dilation", GEOMETRIES)
@pytest.mark.parametrize("kernel_size", [(3, 3), (5, 5), (2, 3)])
def test_forward_matches_numpy(rng, strides, padding, multiplier, dilation, kernel_size):
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    kernel = rng.standard_normal(kernel_size + (3, multiplier)).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, strides, padding, dilation)
    np.testing.assert_allclose(y, reference_depthwise(x, kernel, strides, padding, dilation), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size", [(1, 1), (3, 2), (2, 4), (5, 5), (7, 6)])
@pytest.mark.parametrize("strides,padding,dilation", [((1, 1), "same", (1, 1)), ((1, 1), "valid", (1, 1)),
                                                      ((2, 1), "same", (1, 2)), ((1, 2), "same", (2, 1))])
def test_per_pixel_kernel_over_many_channels(rng, monkeypatch, kernel_size, strides, padding, dilation):
    """The per-pixel kernel (forced: any channel count) over 45 channels, a vectorized run and a
    remainder; interior and border columns, kernels 1 to 7 wide, strides and dilations per axis."""
    monkeypatch.setattr(depthwise, "ROW_KERNEL_MAX_CHANNELS", 0)
    monkeypatch.setattr(depthwise, "TILES_MIN_CHANNELS", 10 ** 9)
    x = rng.standard_normal((2, 11, 12, 45)).astype(np.float32)
    kernel = rng.standard_normal(kernel_size + (45, 1)).astype(np.float32)
    bias = rng.standard_normal(45).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, strides, padding, dilation, bias=bias)
    np.testing.assert_allclose(y, reference_depthwise(x, kernel, strides, padding, dilation) + bias, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("strides,padding,multiplier,dilation", GEOMETRIES)
def test_depthwise_gradients(rng, strides, padding, multiplier, dilation):
    layer = L.DepthwiseConv2D(3, strides=strides, padding=padding, depth_multiplier=multiplier,
                              dilation_rate=dilation, bias_initializer="glorot_uniform")
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    layer(x)
    check(lambda xs, training: layer(xs, training=training), [x], layer.weights)


def test_separable_gradients_and_weight_layout(rng):
    layer = L.SeparableConv2D(4, 3, strides=2, padding="same", depth_multiplier=2, activation="tanh",
                              bias_initializer="glorot_uniform")
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    y = layer(x)
    assert [w.name.split("/")[-1] for w in layer.weights] == ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert [w.shape for w in layer.weights] == [(3, 3, 3, 2), (1, 1, 6, 4), (4,)]
    d = reference_depthwise(x, layer.depthwise_kernel.value, (2, 2), "same")
    expected = np.tanh(d @ layer.pointwise_kernel.value[0, 0] + layer.bias.value)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    check(lambda xs, training: layer(xs, training=training), [x], layer.weights)


def test_matches_torch_grouped_convolution(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 11, 10, 4)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    dy = rng.standard_normal((2, 6, 5, 8)).astype(np.float32)
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tw = torch.tensor(kernel.transpose(2, 3, 0, 1).reshape(8, 1, 3, 3), requires_grad=True)
    (t, b), (lt, r) = pads(11, 3, 2, "same"), pads(10, 3, 2, "same")
    ty = torch.nn.functional.conv2d(torch.nn.functional.pad(tx, (lt, r, t, b)), tw, stride=2, groups=4)
    ty.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    y = depthwise.depthwise_forward(x, kernel, (2, 2), "same")
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
    dx = depthwise.depthwise_backward_input(dy, kernel, x.shape, (2, 2), "same")
    dk = depthwise.depthwise_backward_kernel(x, dy, kernel.shape, (2, 2), "same")
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dk, tw.grad.numpy().reshape(4, 2, 3, 3).transpose(2, 3, 0, 1), rtol=1e-4, atol=1e-4)


def relu_reference(x, max_value, negative_slope, threshold):
    y = np.where(x >= threshold, x, negative_slope * (x - threshold))
    return np.minimum(y, max_value) if max_value is not None else y


@pytest.mark.parametrize("max_value,negative_slope,threshold", [(None, 0.0, 0.0), (6.0, 0.0, 0.0),
                                                                (6.0, 0.2, 0.5), (None, 0.1, -1.0)])
def test_relu_options(rng, max_value, negative_slope, threshold):
    layer = L.ReLU(max_value=max_value, negative_slope=negative_slope, threshold=threshold)
    x = rng.uniform(-8, 9, (4, 50)).astype(np.float32)
    x[np.abs(x - threshold) < 0.05] += 0.1  # keep finite differences off the kinks
    if max_value is not None:
        x[np.abs(x - max_value) < 0.05] += 0.1
    np.testing.assert_allclose(layer(x), relu_reference(x, max_value, negative_slope, threshold), rtol=1e-6)
    check(lambda xs, training: layer(xs, training=training), [x], [])
    clone = L.ReLU.from_config(layer.get_config())
    np.testing.assert_array_equal(clone(x), layer(x))
    with pytest.raises(ValueError, match="max_value"):
        L.ReLU(max_value=-1)


def conv_bn_model(rng):
    inp = tlkit.Input((9, 9, 3))
    x = L.Conv2D(5, 3, strides=2, padding="same", use_bias=False, name="conv")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(6.0, name="relu6")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = L.BatchNormalization(name="bn2")(x)
    out = L.Conv2D(2, 1, name="head")(x)
    model = tlkit.Model(inp, out)
    for bn in (model.get_layer("bn1"), model.get_layer("bn2")):
        bn.set_weights([rng.uniform(0.5, 2, 5), rng.standard_normal(5), rng.standard_normal(5), rng.uniform(0.3, 3, 5)])
    return model


def test_batch_norm_is_folded_into_the_convolution_at_inference(rng, monkeypatch):
    model = conv_bn_model(rng)
    x = rng.standard_normal((3, 9, 9, 3)).astype(np.float32)
    expected = x
    for layer in model.layers[1:]:  # one layer at a time: nothing fused
        expected = layer(expected, training=False)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    fused = model._graph.plan.fused
    assert len(fused) == 2 and all(keyword == "batch_norm" for _, keyword in fused.values())

    def unfolded(*args, **kwargs):
        raise AssertionError("BatchNormalization ran on its own: it should be folded into its convolution")

    monkeypatch.setattr(L.BatchNormalization, "forward", unfolded)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)


def test_frozen_batch_norm_keeps_its_statistics_while_the_rest_trains(rng):
    model = conv_bn_model(rng)
    frozen, trained = model.get_layer("bn1"), model.get_layer("bn2")
    frozen.trainable = False
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers if layer.weights}
    model.compile("adam", "mse")
    x = rng.standard_normal((16, 9, 9, 3)).astype(np.float32)
    model.fit(x, rng.standard_normal((16, 5, 5, 2)).astype(np.float32), epochs=2, batch_size=8, verbose=0)
    for w0, w1 in zip(before["bn1"], frozen.get_weights()):  # gamma, beta and the moving statistics
        np.testing.assert_array_equal(w0, w1)
    for name in ("conv", "dw", "head", "bn2"):
        assert any(not np.array_equal(w0, w1) for w0, w1 in zip(before[name], model.get_layer(name).get_weights()))
    assert not np.array_equal(before["bn2"][2], trained.get_weights()[2])  # a trainable BN's moving mean moves


def test_layers_save_and_load(tmp_path, rng):
    inp = tlkit.Input((8, 8, 3))
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu")(inp)
    x = L.SeparableConv2D(4, 3, strides=2, padding="same")(x)
    out = L.ReLU(max_value=6.0)(x)
    model = tlkit.Model(inp, out)
    model.save(tmp_path / "m.h5")
    loaded = tlkit.models.load_model(tmp_path / "m.h5")
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
