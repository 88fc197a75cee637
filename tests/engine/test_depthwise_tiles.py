"""The tiled depthwise forward (stride 1, and column stride 2 with 3x3 / 5x5 kernels) (kernels/depthwise_tiles.py) against the numpy reference
and torch's grouped convolution: interior blocks, border and leftover columns, rows outside the
input, channel blocks, kernel widths taking each pass (5, 3 and 1 taps), row dilation, both
paddings, bias and clip, channel multiplier, and the layer's folded BatchNormalization + ReLU6."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.kernels import depthwise, depthwise_tiles

from test_depthwise_layers import reference_depthwise


@pytest.fixture
def tiled_calls(monkeypatch):
    """Counts the calls that reach the tiled kernel, so each test proves it ran that route."""
    calls = []

    def spy(*args):
        calls.append(args[0].shape)
        return depthwise_tiles.forward_tiles(*args)
    monkeypatch.setattr(depthwise, "forward_tiles", spy)
    return calls


@pytest.mark.parametrize("kernel_size", [(1, 1), (3, 3), (5, 5), (7, 7), (2, 4), (3, 6), (4, 2)])
@pytest.mark.parametrize("padding,dilation", [("same", (1, 1)), ("valid", (1, 1)), ("same", (2, 1))])
@pytest.mark.parametrize("channels", [16, 300])
def test_tiled_forward_matches_numpy(rng, tiled_calls, kernel_size, padding, dilation, channels):
    """14 columns: whole 4-pixel blocks plus border and leftover columns; 300 channels: a full
    256-channel block and a partial one; kernel widths 7 = 5 + 1 + 1, 6 = 5 + 1, 4 = 3 + 1, 2 = 1 + 1."""
    x = rng.standard_normal((2, 9, 14, channels)).astype(np.float32)
    kernel = rng.standard_normal(kernel_size + (channels, 1)).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), padding, dilation, bias=bias)
    assert len(tiled_calls) == 1
    np.testing.assert_allclose(y, reference_depthwise(x, kernel, (1, 1), padding, dilation) + bias, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("shape,kernel_size", [((1, 3, 3, 20), (5, 5)), ((3, 6, 5, 33), (3, 3)),
                                               ((1, 2, 17, 24), (3, 5))])
def test_tiled_forward_small_images_and_clip(rng, tiled_calls, shape, kernel_size):
    """Images with no or one interior block (every column a border column, taps past both edges
    and past the top and bottom), an odd channel count, and the ReLU6 clip in the write."""
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    kernel = rng.standard_normal(kernel_size + (shape[-1], 1)).astype(np.float32)
    bias = rng.standard_normal(shape[-1]).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), "same", bias=bias, clip=(0.0, 6.0))
    assert len(tiled_calls) == 1
    expected = np.clip(reference_depthwise(x, kernel, (1, 1), "same") + bias, 0.0, 6.0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_tiled_forward_channel_multiplier_and_output_buffer(rng, tiled_calls):
    x = rng.standard_normal((2, 10, 11, 12)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 12, 2)).astype(np.float32)
    out = np.full((2, 10, 11, 24), np.nan, np.float32)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), "same", clip=(None, 1.5), out=out)
    assert y is out and len(tiled_calls) == 1
    np.testing.assert_allclose(y, np.minimum(reference_depthwise(x, kernel, (1, 1), "same"), 1.5), rtol=1e-5,
                               atol=1e-5)


def test_other_geometries_skip_the_tiled_kernel(rng, tiled_calls):
    """Column stride 2 with a kernel other than square 3x3 / 5x5, column stride 3, column dilation
    and fewer than TILES_MIN_CHANNELS channels take the other kernels."""
    x = rng.standard_normal((1, 8, 9, 32)).astype(np.float32)
    for kernel_size, strides, dilation in [((3, 3), (3, 3), (1, 1)), ((2, 3), (2, 2), (1, 1)),
                                           ((7, 7), (1, 2), (1, 1)), ((3, 3), (1, 1), (1, 2))]:
        kernel = rng.standard_normal(kernel_size + (32, 1)).astype(np.float32)
        y = depthwise.depthwise_forward(x, kernel, strides, "same", dilation)
        np.testing.assert_allclose(y, reference_depthwise(x, kernel, strides, "same", dilation), rtol=1e-5,
                                   atol=1e-5)
    kernel = rng.standard_normal((3, 3, 8, 1)).astype(np.float32)
    depthwise.depthwise_forward(x[..., :8], kernel, (1, 1), "same")
    assert tiled_calls == []


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("strides,padding,dilation", [((2, 2), "same", (1, 1)), ((2, 2), "valid", (1, 1)),
                                                      ((1, 2), "same", (1, 1)), ((2, 2), "same", (2, 1))])
@pytest.mark.parametrize("channels", [37, 290])
def test_strided_rows_match_numpy(rng, tiled_calls, k, strides, padding, dilation, channels):
    """Column stride 2 (MobileNetV2's and EfficientNet's downsampling layers): whole-window passes
    on every other input column, the border rows and columns pixel by pixel. Odd and even sizes
    (15 x 22: 'same' pads 0 or 1 on top / left and 1-2 below / right), row dilation, row stride 1,
    odd and partial-block channel counts, bias and a clip in the write."""
    x = (2 * rng.standard_normal((3, 15, 22, channels))).astype(np.float32)
    kernel = rng.standard_normal((k, k, channels, 1)).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, strides, padding, dilation, bias=bias, clip=(-4.0, 5.0))
    assert len(tiled_calls) == 1
    expected = np.clip(reference_depthwise(x, kernel, strides, padding, dilation) + bias, -4.0, 5.0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 4, 4, 16), (1, 5, 9, 24), (2, 16, 31, 48)])
def test_strided_small_and_odd_images(rng, tiled_calls, shape):
    """Stride-2 3x3 'same' on images with no interior block, one, and a leftover column."""
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal((3, 3, shape[-1], 1)).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (2, 2), "same")
    assert len(tiled_calls) == 1
    np.testing.assert_allclose(y, reference_depthwise(x, kernel, (2, 2), "same"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("padding,dilation", [("same", (1, 1)), ("valid", (1, 1)), ("same", (2, 1))])
@pytest.mark.parametrize("channels", [37, 290])
def test_whole_window_rows_match_numpy(rng, tiled_calls, k, padding, dilation, channels):
    """Square 3x3 / 5x5 kernels: rows with every kernel row inside the input take the whole-window
    passes (sums in registers), the top and bottom rows the kernel-row passes. 3 images of 13 x 19
    (interior blocks, border and leftover columns, the next job's rows prefetched across images), channel counts that are not a multiple of a vector (37) and that leave a
    partial 256-channel block (290), bias and a clip in the write."""
    x = (2 * rng.standard_normal((3, 13, 19, channels))).astype(np.float32)
    kernel = rng.standard_normal((k, k, channels, 1)).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), padding, dilation, bias=bias, clip=(-4.0, 5.0))
    assert len(tiled_calls) == 1
    expected = np.clip(reference_depthwise(x, kernel, (1, 1), padding, dilation) + bias, -4.0, 5.0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_many_small_images_row_jobs(rng, tiled_calls, k, stride):
    """7 images of 7 x 7 (MobileNetV2's last stage, where every column is near a border): each row
    job computes its row and prefetches the next job's input rows and output row, the next image's
    first rows after an image's last row and nothing past the batch's last job; 101 channels (a
    partial vector)."""
    x = rng.standard_normal((7, 7, 7, 101)).astype(np.float32)
    kernel = rng.standard_normal((k, k, 101, 1)).astype(np.float32)
    bias = rng.standard_normal(101).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (stride, stride), "same", bias=bias)
    assert len(tiled_calls) == 1
    expected = reference_depthwise(x, kernel, (stride, stride), "same") + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_whole_window_rows_with_channel_multiplier(rng, tiled_calls):
    """depth_multiplier 3 over 7 input channels (21 output channels) through the 5x5 whole-window passes."""
    x = rng.standard_normal((2, 11, 12, 7)).astype(np.float32)
    kernel = rng.standard_normal((5, 5, 7, 3)).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), "same")
    assert len(tiled_calls) == 1
    np.testing.assert_allclose(y, reference_depthwise(x, kernel, (1, 1), "same"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_tiled_forward_matches_torch(rng, tiled_calls, k, stride):
    """Odd 15 x 15 images: 'same' and torch's symmetric padding agree at both strides."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 15, 15, 64)).astype(np.float32)
    kernel = rng.standard_normal((k, k, 64, 1)).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (stride, stride), "same")
    tx = torch.tensor(x.transpose(0, 3, 1, 2))
    tw = torch.tensor(kernel[:, :, :, 0].transpose(2, 0, 1)[:, None])
    ty = torch.nn.functional.conv2d(tx, tw, stride=stride, padding=k // 2, groups=64).numpy().transpose(0, 2, 3, 1)
    assert len(tiled_calls) == 1
    np.testing.assert_allclose(y, ty, rtol=1e-4, atol=1e-5)


def test_layer_folded_batch_norm_relu6_on_tiled_route(rng, tiled_calls):
    """conv -> BatchNormalization -> ReLU6 at inference (the MobileNet block) over 40 channels:
    the folded, clipped output of the tiled kernel equals the layers run one by one."""
    inp = tlkit.Input((9, 10, 40))
    d = L.DepthwiseConv2D(3, padding="same", use_bias=False)(inp)
    out = L.ReLU(6.0)(L.BatchNormalization()(d))
    model = tlkit.Model(inp, out)
    bn = model.layers[2]
    bn.set_weights([rng.uniform(0.5, 2, 40).astype(np.float32), rng.standard_normal(40).astype(np.float32),
                    rng.standard_normal(40).astype(np.float32), rng.uniform(0.5, 2, 40).astype(np.float32)])
    x = (2 * rng.standard_normal((2, 9, 10, 40))).astype(np.float32)
    gamma, beta, mean, var = bn.get_weights()
    z = reference_depthwise(x, model.layers[1].depthwise_kernel.value, (1, 1), "same")
    expected = np.clip((z - mean) / np.sqrt(var + bn.epsilon) * gamma + beta, 0.0, 6.0)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)
    assert tiled_calls
