"""Convolutions of few output pixels (batch-1 deep layers): the product split by output channels
(conv_chunks.product_columns) and 3x3 convs of a handful of Winograd tiles sent to im2col, each
checked against a float64 numpy reference and against the row-tile route, with poisoned buffers."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.kernels import conv, conv_chunks, epilogue, winograd
from tlkit.utils import threads, workspace

from test_conv_kernels import close, ref_forward


@pytest.fixture(params=[2, 3])
def split(request, monkeypatch):
    """The column route forced on 2 or 3 threads, whatever the machine has, in blocks of 16 columns
    (3 threads: three uneven blocks of a 50-column output)."""
    monkeypatch.setattr(threads, "num_threads", lambda: request.param)
    monkeypatch.setattr(conv_chunks, "COLUMNS", True)
    return request.param


# (x shape, (kh, kw, filters), strides, padding): 1x1 strided (ResNet50's projections), 3x3 at 7x7
# (Winograd skipped: 4 tiles), 3x3 'valid', and a 5x5; odd channel counts
CASES = [
    ((1, 9, 11, 37), (1, 1, 50), (2, 2), "same"),
    ((1, 7, 7, 128), (3, 3, 130), (1, 1), "same"),
    ((1, 9, 8, 19), (3, 3, 33), (1, 1), "valid"),
    ((2, 6, 5, 7), (5, 5, 45), (2, 1), "same"),
]


def make(case, rng):
    x_shape, (kh, kw, f), s, padding = case
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal((kh, kw, x_shape[3], f)) / np.sqrt(kh * kw * x_shape[3])).astype(np.float32)
    return x, w, rng.standard_normal(f).astype(np.float32), s, padding


@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) + str(c[1]) for c in CASES])
def test_column_route_matches_reference_and_rows(case, rng, split, monkeypatch):
    x, w, b, s, padding = make(case, rng)
    want = ref_forward(x, w, b, s, padding, (1, 1), relu=True)
    got = conv.conv2d_forward(x, w, b, s, padding, relu=True)
    close(got, want)
    if w.shape[:2] == (3, 3) and s == (1, 1):  # a transformed filter passed in is not used at a few tiles
        close(conv.conv2d_forward(x, w, b, s, padding, relu=True, wino_filter=winograd.transform_filter(w)), want)
    monkeypatch.setattr(conv_chunks, "COLUMNS", False)  # the row tiles the route replaces
    close(conv.conv2d_forward(x, w, b, s, padding, relu=True), got.astype(np.float64))


def test_column_route_writes_only_its_channel_slice(rng, split):
    x, w, b, s, padding = make(CASES[1], rng)
    assert winograd.applicable(x.shape, w.shape, s, (1, 1)) and winograd.few_tiles(1, 7, 7)
    f = w.shape[3]
    buf = np.full((1, 7, 7, f + 7), np.nan, np.float32)
    for trial in range(2):  # the same buffer again, new input: nothing left over from the first call
        x = rng.standard_normal(x.shape).astype(np.float32)
        y = conv.conv2d_forward(x, w, b, s, padding, relu=False, out=buf[..., 3:3 + f])
        close(y, ref_forward(x, w, b, s, padding, (1, 1)))
        close(buf[..., 3:3 + f], ref_forward(x, w, b, s, padding, (1, 1)))
        assert np.isnan(buf[..., :3]).all() and np.isnan(buf[..., 3 + f:]).all()


def test_reused_patch_matrix_is_rewritten(rng, split):
    # 15x15 outputs of a 3x3 x 136-channel window: a patch matrix of 1 MiB or more, taken from the
    # workspace; poisoned there before the second call
    x = rng.standard_normal((1, 29, 29, 136)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 136, 40)) / 35).astype(np.float32)
    close(conv.conv2d_forward(x, w, None, 2, "same"), ref_forward(x, w, None, (2, 2), "same", (1, 1)))
    patches = workspace.take((15 * 15, 3 * 3 * 136), np.float32)
    assert patches.nbytes >= workspace.MIN_BYTES
    patches[:] = np.nan
    workspace.give_back([patches])
    del patches
    x = rng.standard_normal(x.shape).astype(np.float32)
    close(conv.conv2d_forward(x, w, None, 2, "same"), ref_forward(x, w, None, (2, 2), "same", (1, 1)))


@pytest.mark.parametrize("with_residual", [False, True])
def test_pointwise_conv_columns_with_residual_and_clip(rng, split, with_residual, monkeypatch):
    x = rng.standard_normal((1, 7, 5, 33)).astype(np.float32) * 3
    w = rng.standard_normal((33, 50)).astype(np.float32) / 6
    b = rng.standard_normal(50).astype(np.float32)
    residual = rng.standard_normal((1, 7, 5, 50)).astype(np.float32) if with_residual else None
    want = x.astype(np.float64) @ w + b + (0 if residual is None else residual)
    want = np.clip(want, 0.0, 6.0)
    assert (want == 0).any() and (want == 6).any()
    out = np.full((1, 7, 5, 50), np.nan, np.float32)
    got = epilogue.pointwise_conv(x, w, b, residual, 0.0, 6.0, out)
    assert got is out
    close(out, want)
    monkeypatch.setattr(conv_chunks, "COLUMNS", False)
    close(epilogue.pointwise_conv(x, w, b, residual, 0.0, 6.0), out.astype(np.float64))


def test_route_rules(monkeypatch):
    monkeypatch.setattr(threads, "num_threads", lambda: 2)
    big = 200_000_000
    assert conv_chunks.by_columns(49, 2048, big)  # ResNet50's conv5 at batch 1
    assert conv_chunks.by_columns(196, 256, big)
    assert not conv_chunks.by_columns(784, 512, big)  # 28x28: row tiles
    assert not conv_chunks.by_columns(49, 16, big)  # one block of columns only
    assert not conv_chunks.by_columns(49, 2048, 1000)  # too small to hand off
    monkeypatch.setattr(conv_chunks, "CHUNKED", True)  # a test forcing the row chunks keeps them
    assert not conv_chunks.by_columns(49, 2048, big)
    monkeypatch.setattr(threads, "num_threads", lambda: 1)
    monkeypatch.setattr(conv_chunks, "CHUNKED", None)
    assert not conv_chunks.by_columns(49, 2048, big)
    assert winograd.few_tiles(1, 7, 7) and not winograd.few_tiles(2, 7, 7) and not winograd.few_tiles(1, 14, 14)


def test_folded_conv_at_few_tiles_matches_numpy_and_keeps_no_transformed_filter(rng, split):
    """ResNet50's conv5 3x3 at batch 1, small: conv -> BN (folded) -> Add -> ReLU in one pass."""
    inp = tlkit.Input((7, 7, 128))
    conv_layer = L.Conv2D(128, 3, padding="same", use_bias=False)
    bn = L.BatchNormalization(epsilon=1e-3)
    out = L.Activation("relu")(L.Add()([bn(conv_layer(inp)), inp]))
    model = tlkit.Model(inp, out)
    model.trainable = False
    gamma, beta, mean, var = (rng.uniform(0.5, 2, 128), rng.standard_normal(128), rng.standard_normal(128),
                              rng.uniform(0.3, 3, 128))
    bn.set_weights([gamma, beta, mean, var])
    w = conv_layer.get_weights()[0]
    for _ in range(2):
        x = rng.standard_normal((1, 7, 7, 128)).astype(np.float32)
        y = ref_forward(x, w, None, (1, 1), "same", (1, 1))
        want = np.maximum((y - mean) / np.sqrt(var + 1e-3) * gamma + beta + x, 0)
        close(np.asarray(model.predict_on_batch(x)), want, rtol=1e-4)
    assert getattr(conv_layer, "_folded_wino", None) is None
