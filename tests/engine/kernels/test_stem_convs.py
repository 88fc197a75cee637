"""Convolutions with few input channels (a network's stem): the im2col + BLAS route that RGB stems
take alone, and the band route with its max pooling (conv_pool_bands.py), against float64 numpy;
whole forwards against the routes they replaced."""
import numpy as np
import pytest

from tests.engine.kernels.test_conv_pool_bands import numpy_conv_pool
from tlkit.engine.kernels import conv, conv_chunks, conv_pool_bands, direct_conv
from tlkit.utils import threads


def tf_padded(x, k, stride, padding):
    """x zero-padded as TF pads: 'same' puts the odd pixel at the bottom / right."""
    if padding == "valid":
        return x
    pads = []
    for size in x.shape[1:3]:
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def numpy_conv(x, w, b, stride, padding, relu):
    x = tf_padded(x.astype(np.float64), w.shape[0], stride, padding)
    kh, kw, _, f = w.shape
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = np.zeros((x.shape[0], oh, ow, f)) + b
    for i in range(kh):
        for j in range(kw):
            y += x[:, i:i + stride * oh:stride, j:j + stride * ow:stride] @ w[i, j].astype(np.float64)
    return np.maximum(y, 0) if relu else y


@pytest.fixture
def direct_kernel_calls(monkeypatch):
    calls = []
    real = direct_conv.conv_bias_relu

    def counted(*a):
        calls.append(a[-4])
        return real(*a)

    monkeypatch.setattr(direct_conv, "conv_bias_relu", counted)
    return calls


# (x shape, k, stride, padding, filters): odd and even sizes, TF 'same' with the odd pixel at the
# bottom / right, filters off the vector width
STEMS = [
    ((2, 17, 19, 3), 3, 2, "same", 32),    # MobileNetV2 / EfficientNet-Lite0 stem in miniature
    ((1, 16, 15, 3), 3, 2, "same", 33),
    ((2, 15, 17, 3), 3, 2, "valid", 64),   # SqueezeNet conv1 without its pool
    ((3, 13, 11, 4), 3, 1, "valid", 20),
    ((1, 9, 10, 3), 3, 1, "same", 7),
    ((2, 21, 20, 3), 7, 2, "valid", 17),   # ResNet50's 7x7/2 stem (after its ZeroPadding2D)
    ((2, 11, 12, 1), 3, 2, "same", 5),     # one channel: K = 9, the direct kernel
    ((1, 12, 9, 1), 3, 1, "valid", 18),
    ((2, 13, 14, 3), 3, 3, "same", 16),    # stride 3
]


@pytest.mark.parametrize("chunked", [True, False], ids=["chunks", "serial_tiles"])
@pytest.mark.parametrize("shape, k, stride, padding, filters", STEMS)
def test_stem_convs_match_float64_numpy(monkeypatch, rng, direct_kernel_calls, chunked, shape, k, stride, padding,
                                        filters):
    monkeypatch.setattr(conv_chunks, "CHUNKED", chunked)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((k, k, shape[3], filters)).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    for relu in (True, False):
        got = conv.conv2d_forward(x, w, b, stride, padding, relu=relu)
        want = numpy_conv(x, w, b, stride, padding, relu)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    small_window = k * k * shape[3] <= (direct_conv.MAX_K if stride == 1 else direct_conv.MAX_K_STRIDED)
    assert bool(direct_kernel_calls) == small_window  # strided RGB stems take im2col + BLAS


@pytest.mark.parametrize("cin", [1, 3, 4])
@pytest.mark.parametrize("size, pool, pool_stride, pool_pad", [
    ((23, 21), 3, 2, "valid"),   # SqueezeNet's pool1: the last window ends on the last row
    ((24, 20), 3, 2, "valid"),   # ... and one that leaves a row / column out
    ((23, 22), 3, 2, "same"),    # TF 'same' pooling: padded cells at the bottom / right never win
    ((21, 23), 3, 1, "same"),    # padding on both sides: windows clipped at the top and left too
    ((22, 22), 2, 2, "valid"),
])
@pytest.mark.parametrize("band_bytes, parts", [(1, 3), (1 << 30, 1), (40_000, 2)],
                         ids=["one_pooled_row_a_band", "whole_image_one_thread", "a_few_rows_a_band"])
def test_band_route_pool_borders_match_float64_numpy(monkeypatch, cin, size, pool, pool_stride, pool_pad,
                                                     band_bytes, parts):
    rng = np.random.default_rng(cin * 100 + pool * 10 + pool_stride)
    monkeypatch.setattr(conv_pool_bands, "BAND_BYTES", band_bytes)
    monkeypatch.setattr(threads, "num_threads", lambda: parts)
    x = rng.standard_normal((2,) + size + (cin,)).astype(np.float32)
    w = rng.standard_normal((3, 3, cin, 33)).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    assert conv_pool_bands.preferred(33, (1, 1))
    for conv_pad, relu in (("valid", True), ("same", False)):
        want = numpy_conv_pool(x.astype(np.float64), w.astype(np.float64), b, 2, conv_pad, pool, pool_stride,
                               pool_pad, relu)
        got = conv.conv2d_maxpool_forward(x, w, b, strides=2, padding=conv_pad, relu=relu, pool_size=pool,
                                          pool_strides=pool_stride, pool_padding=pool_pad)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_squeezenet_forward_matches_the_direct_fused_route(monkeypatch):
    # conv1 + pool1 by BLAS bands against the direct kernel that fuses the pool (an independent
    # implementation), the rest of the network the same; batch 8 takes the groups-of-images route.
    from tlkit.engine import batch_split
    from tlkit.utils.random import set_random_seed
    from tlkit.zoo import SqueezeNet

    set_random_seed(3)
    model = SqueezeNet(weights=None, input_shape=(67, 69, 3))
    model.trainable = False
    x = np.random.default_rng(4).uniform(-1, 1, (8, 67, 69, 3)).astype(np.float32)
    for groups in (None, False):
        monkeypatch.setattr(batch_split, "ENABLED", groups)
        bands = model.predict_on_batch(x).copy()
        with monkeypatch.context() as m:
            m.setattr(conv_pool_bands, "MIN_FILTERS", 1 << 30)
            direct = model.predict_on_batch(x).copy()
        assert np.abs(bands).max() > 0
        np.testing.assert_allclose(bands, direct, rtol=1e-4, atol=1e-4 * np.abs(direct).max())


def test_mobilenet_v2_forward_matches_the_direct_stem(monkeypatch):
    # The 3x3/2 RGB stem (BatchNormalization folded, ReLU6) through im2col + BLAS against the
    # direct kernel it took before, read after the stem and a block later (random weights fade
    # deeper in).
    from tlkit.engine.model import Model
    from tlkit.utils.random import set_random_seed
    from tlkit.zoo import MobileNetV2

    set_random_seed(5)
    base = MobileNetV2(input_shape=(65, 63, 3), alpha=0.35, include_top=False, weights=None)
    model = Model(base.input, [base.get_layer("Conv1_relu").output, base.get_layer("block_1_expand_relu").output])
    model.trainable = False
    x = np.random.default_rng(6).uniform(-1, 1, (2, 65, 63, 3)).astype(np.float32)
    im2col = [y.copy() for y in model.predict_on_batch(x)]
    monkeypatch.setattr(direct_conv, "MAX_K_STRIDED", 27)
    direct = model.predict_on_batch(x)
    for got, want in zip(im2col, direct):
        assert np.abs(want).max() > 0.1
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert im2col[0].max() <= 6.0 and im2col[0].min() >= 0.0  # ReLU6 applied
