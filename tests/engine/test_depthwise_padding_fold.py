"""A ZeroPadding2D before a 'valid' DepthwiseConv2D (MobileNetV2's downsampling blocks) folded into
the conv at inference: the kernels read the unpadded input with the zeros taken in place
(depthwise_forward's zero_pads), and the inference plan skips the padded copy. Checked against a
float64 numpy reference of pad-then-convolve, on every kernel route, odd sizes and uneven pads."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.kernels import depthwise
from tlkit.engine.layers.padding import ZeroPadding2D

from test_depthwise_layers import reference_depthwise


def padded_reference(x, kernel, strides, pads, bias=0.0):
    xp = np.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
    return reference_depthwise(xp, kernel, strides, "valid") + bias


@pytest.mark.parametrize("channels,strides,k", [(8, (1, 1), 3), (8, (2, 2), 3), (40, (1, 1), 5),
                                                (40, (2, 2), 3), (40, (2, 2), 5), (24, (2, 1), 3)])
@pytest.mark.parametrize("pads", [((0, 1), (0, 1)), ((1, 1), (1, 1)), ((2, 0), (1, 2))])
def test_zero_pads_match_a_padded_copy(rng, channels, strides, k, pads):
    """Row kernel (8 channels, stride 1), per-pixel kernel (8, stride 2), tiled kernel (24-40)."""
    x = rng.standard_normal((2, 11, 14, channels)).astype(np.float32)
    kernel = rng.standard_normal((k, k, channels, 1)).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, strides, "valid", bias=bias, clip=(0.0, 6.0), zero_pads=pads)
    expected = np.clip(padded_reference(x, kernel, strides, pads, bias), 0.0, 6.0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture
def pad_calls(monkeypatch):
    """Counts ZeroPadding2D calls that make a padded copy."""
    calls = []
    real = ZeroPadding2D.call

    def spy(self, inputs, *args, **kwargs):
        calls.append(self.name)
        return real(self, inputs, *args, **kwargs)
    monkeypatch.setattr(ZeroPadding2D, "call", spy)
    return calls


def mobilenet_downsampling(rng, channels, pads, k):
    """expand 1x1 conv -> ZeroPadding2D -> DepthwiseConv2D k/2 'valid' -> BatchNormalization -> ReLU6."""
    inp = tlkit.Input((13, 10, 6))
    e = L.Conv2D(channels, 1, name="expand")(inp)
    p = L.ZeroPadding2D(pads, name="pad")(e)
    d = L.DepthwiseConv2D(k, strides=2, padding="valid", use_bias=False, name="dw")(p)
    out = L.ReLU(6.0)(L.BatchNormalization(name="bn")(d))
    model = tlkit.Model(inp, out)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 2, channels).astype(np.float32), rng.standard_normal(channels).astype(np.float32),
                    rng.standard_normal(channels).astype(np.float32), rng.uniform(0.5, 2, channels).astype(np.float32)])
    return model


def model_reference(model, x):
    w, b = model.get_layer("expand").get_weights()
    e = x.astype(np.float64) @ w[0, 0] + b
    pads = model.get_layer("pad").padding
    z = padded_reference(e, model.get_layer("dw").depthwise_kernel.value, (2, 2), pads)
    bn = model.get_layer("bn")
    gamma, beta, mean, var = bn.get_weights()
    return np.clip((z - mean) / np.sqrt(var + bn.epsilon) * gamma + beta, 0.0, 6.0)


@pytest.mark.parametrize("channels,pads,k", [(40, ((0, 1), (0, 1)), 3), (8, ((1, 1), (1, 1)), 3),
                                             (33, ((2, 2), (1, 2)), 5)])
def test_inference_plan_folds_the_padding(rng, pad_calls, channels, pads, k):
    """predict runs the block with no padded copy and matches pad-then-convolve; a call under a
    recording tape still pads (each layer on its own) and gives the same values."""
    model = mobilenet_downsampling(rng, channels, pads, k)
    x = rng.standard_normal((3, 13, 10, 6)).astype(np.float32)
    expected = model_reference(model, x)
    for _ in range(2):  # the second call runs on recycled buffers
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)
    assert pad_calls == []
    with tlkit.GradientTape():
        y = model(x, training=False)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)
    assert pad_calls == ["pad"]


def test_padding_read_by_two_layers_is_copied(rng, pad_calls):
    """A ZeroPadding2D whose output another layer also reads is computed as usual."""
    inp = tlkit.Input((9, 9, 20))
    p = L.ZeroPadding2D(((0, 1), (0, 1)))(inp)
    d = L.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu")(p)
    pooled = L.MaxPooling2D(2, padding="valid")(p)
    model = tlkit.Model(inp, [d, pooled])
    x = rng.standard_normal((2, 9, 9, 20)).astype(np.float32)
    y, _ = model.predict(x, verbose=0)
    kernel, bias = model.layers[2].get_weights()
    np.testing.assert_allclose(y, np.maximum(padded_reference(x, kernel, (2, 2), ((0, 1), (0, 1)), bias), 0),
                               rtol=1e-5, atol=1e-5)
    assert len(pad_calls) == 1


def test_plain_depthwise_with_activation_folds_the_padding(rng, pad_calls):
    """No BatchNormalization after the conv: its own bias and activation on the folded route."""
    inp = tlkit.Input((12, 7, 24))
    d = L.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu")(L.ZeroPadding2D(1)(inp))
    model = tlkit.Model(inp, d)
    x = rng.standard_normal((2, 12, 7, 24)).astype(np.float32)
    kernel, bias = model.layers[-1].get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               np.maximum(padded_reference(x, kernel, (2, 2), ((1, 1), (1, 1)), bias), 0),
                               rtol=1e-5, atol=1e-5)
    assert pad_calls == []


def test_folded_padding_on_recycled_buffers(rng, pad_calls):
    """expand conv -> pad -> depthwise: the expand output's recycled buffer passes to the pad's
    output and is recycled after the conv; stale values in the recycled buffers never leak."""
    model = mobilenet_downsampling(rng, 20, ((0, 1), (0, 1)), 3)
    assert len(model._graph.plan.absorbed) == 1
    for _ in range(3):
        x = rng.standard_normal((2, 13, 10, 6)).astype(np.float32)
        np.testing.assert_allclose(model.predict_on_batch(x), model_reference(model, x), rtol=1e-4, atol=1e-4)
        assert model._graph._free
        for buf in model._graph._free:
            buf.fill(np.nan)
    assert pad_calls == []
