"""Folded convs through gemm_blocks (kernels/packed_conv.py): strided 1x1 convs on gathered pixels and
k x k convs on im2col patches, with bias, residual and clip fused, against a float64 numpy reference on
odd shapes, into NaN-poisoned outputs, on the few-rows route and the tiled one, on 1 and 3 threads."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.kernels import conv_chunks, gemm_blocks, packed_conv
from tlkit.utils import threads

from test_conv_kernels import close, ref_forward

AVX512 = gemm_blocks.lanes() == 16

# (x shape, (kh, kw, filters), strides, padding): strided 1x1 (ResNet50's projections; odd sizes, stride
# 3), a 7x7/2 stem over RGB, 3x3 at 7x7 (4 Winograd tiles), a 5x5/2 and a 3x3/2 with odd channel counts
CASES = [
    ((1, 9, 11, 37), (1, 1, 50), (2, 2), "same"),
    ((2, 13, 10, 21), (1, 1, 19), (3, 2), "valid"),
    ((1, 37, 35, 3), (7, 7, 20), (2, 2), "valid"),
    ((2, 30, 31, 3), (7, 7, 64), (2, 2), "same"),
    ((1, 7, 7, 96), (3, 3, 70), (1, 1), "same"),
    ((1, 11, 9, 13), (5, 5, 33), (2, 2), "same"),
    ((3, 15, 17, 24), (3, 3, 29), (2, 1), "valid"),
]


@pytest.fixture(params=["one thread", "tiles", "three threads"])
def route(request, monkeypatch):
    """One thread as the machine runs it; one output row per tile (every image and row bound); three
    threads whatever the machine has, the chunks forced."""
    if request.param == "tiles":
        monkeypatch.setattr(packed_conv, "TILE_BYTES", 1)
        monkeypatch.setattr(packed_conv, "FEW_ROWS", 0)
    if request.param == "three threads":
        monkeypatch.setattr(threads, "num_threads", lambda: 3)
        monkeypatch.setattr(conv_chunks, "CHUNKED", True)
        monkeypatch.setattr(packed_conv, "TILE_BYTES", 20_000)
        monkeypatch.setattr(packed_conv, "FEW_ROWS", 40)
    return request.param


def _case(case, rng):
    x_shape, (kh, kw, f), s, padding = case
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal((kh, kw, x_shape[3], f)) / np.sqrt(kh * kw * x_shape[3])).astype(np.float32)
    return x, w, rng.standard_normal(f).astype(np.float32), s, padding


@pytest.mark.skipif(not AVX512, reason="the route runs with 16 float32 lanes (AVX-512) only")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("epilogue", ["bias", "residual+clip", "clip6"])
def test_folded_conv_matches_numpy(case, epilogue, route, rng):
    x, w, b, s, padding = _case(case, rng)
    want = ref_forward(x, w, b, s, padding, (1, 1))
    residual, clip = None, None
    if epilogue == "residual+clip":
        residual = rng.standard_normal(want.shape).astype(np.float32)
        want, clip = np.maximum(want + residual, 0), (0.0, None)
    elif epilogue == "clip6":
        want, clip = np.clip(want, 0, 6), (0.0, 6.0)
    out = np.full(want.shape, np.nan, np.float32)
    y = packed_conv.folded_conv(x, w, b, s, padding, (1, 1), residual, clip, out)
    assert y is out
    close(out, want)
    again = packed_conv.folded_conv(x, w, None, s, padding, (1, 1), None, None)  # a new array, no bias
    close(again, ref_forward(x, w, None, s, padding, (1, 1)))


def test_other_kernels_keep_their_convs(rng):
    """None (the caller's route) for what pointwise_conv, stem_conv, the direct kernel and Winograd take,
    for dilations, float64 inputs and mismatched outs."""
    x = rng.standard_normal((1, 16, 16, 32)).astype(np.float32)
    one = lambda kh, c, f: np.zeros((kh, kh, c, f), np.float32)  # noqa: E731
    assert packed_conv.folded_conv(x, one(1, 32, 8), None, (1, 1), "same", (1, 1), None, None) is None
    wide = rng.standard_normal((1, 20, 20, 32)).astype(np.float32)  # 25 Winograd tiles: Winograd's
    assert packed_conv.folded_conv(wide, one(3, 32, 32), None, (1, 1), "same", (1, 1), None, None) is None
    assert packed_conv.few_winograd_tiles(1, 16, 16) and not packed_conv.few_winograd_tiles(2, 16, 16)
    assert packed_conv.folded_conv(x, one(3, 32, 8), None, (2, 2), "same", (2, 2), None, None) is None
    assert packed_conv.folded_conv(x.astype(np.float64), one(3, 32, 8), None, (2, 2), "same", (1, 1), None,
                                   None) is None
    rgb = rng.standard_normal((1, 16, 16, 3)).astype(np.float32)
    assert packed_conv.folded_conv(rgb, one(3, 3, 8), None, (2, 2), "same", (1, 1), None, None) is None  # stem
    gray = rng.standard_normal((1, 16, 16, 1)).astype(np.float32)
    assert packed_conv.folded_conv(gray, one(3, 1, 8), None, (2, 2), "same", (1, 1), None, None) is None  # direct
    wrong = np.empty((1, 8, 8, 9), np.float32)
    assert packed_conv.folded_conv(x, one(3, 32, 8), None, (2, 2), "same", (1, 1), None, None, wrong) is None
    deep = one(3, 600, 8)  # K = 5400 > LIMIT_K
    assert packed_conv.folded_conv(np.zeros((1, 8, 8, 600), np.float32), deep, None, (2, 2), "same", (1, 1), None,
                                   None) is None
    if not AVX512:
        assert packed_conv.folded_conv(x, one(3, 32, 8), None, (2, 2), "same", (1, 1), None, None) is None


def test_frozen_resnet_block_matches_numpy_with_and_without_the_route(monkeypatch, rng):
    """A ResNet-style downsampling block, frozen (BatchNormalization folded): a 7x7/2 stem, a 1x1/2
    shortcut and a 1x1/2 conv -> BN -> ReLU, a 3x3 at 4x4 outputs + BN + Add + ReLU; predict_on_batch
    against numpy, with packed_conv on and off."""
    inp = tlkit.Input((16, 16, 3))
    convs = [L.Conv2D(24, 7, strides=2, padding="same"), L.Conv2D(32, 1, strides=2), L.Conv2D(16, 1, strides=2),
             L.Conv2D(32, 3, padding="same")]
    bns = [L.BatchNormalization() for _ in convs]
    h = L.ReLU()(bns[0](convs[0](inp)))
    short = bns[1](convs[1](h))
    body = bns[3](convs[3](L.ReLU()(bns[2](convs[2](h)))))
    model = tlkit.Model(inp, L.ReLU()(L.Add()([short, body])))
    for layer in bns:
        n = layer.get_weights()[0].shape[0]
        layer.set_weights([rng.uniform(0.5, 2, n), rng.standard_normal(n), rng.standard_normal(n) * 0.1,
                           rng.uniform(0.5, 2, n)])
    model.trainable = False
    x = rng.standard_normal((1, 16, 16, 3)).astype(np.float32)

    def conv_bn(i, v):
        g, beta, mean, var = bns[i].get_weights()
        kernel, bias = convs[i].get_weights()
        y = ref_forward(v, kernel, bias, convs[i].strides, convs[i].padding, (1, 1))
        return (y - mean) / np.sqrt(var + bns[i].epsilon) * g + beta

    h = np.maximum(conv_bn(0, x), 0).astype(np.float32)
    b = np.maximum(conv_bn(2, h), 0).astype(np.float32)
    want = np.maximum(conv_bn(1, h) + conv_bn(3, b), 0)
    taken, original = [], packed_conv.folded_conv

    def counted(*args, **kwargs):
        y = original(*args, **kwargs)
        taken.append(y is not None)
        return y

    monkeypatch.setattr(packed_conv, "folded_conv", counted)
    for enabled in (True, False, True):
        monkeypatch.setattr(packed_conv, "ENABLED", enabled)
        taken.clear()
        for _ in range(2):  # the second call replays the compiled steps
            close(np.asarray(model.predict_on_batch(x)), want, rtol=1e-4)
        assert sum(taken) == (8 if enabled and AVX512 else 0)  # the four convs, twice
    model.trainable = True  # folded at each call (inference still uses the moving statistics): not packed
    taken.clear()
    close(np.asarray(model.predict_on_batch(x)), want, rtol=1e-4)
    assert not any(taken)


@pytest.mark.parametrize("use_bias", [True, False])
def test_frozen_pointwise_conv_keeps_its_packing_until_a_weight_changes(use_bias, rng):
    """A frozen 1x1 Conv2D (no BatchNormalization) packs its kernel once; set_weights and assign are seen at
    the next call; a trainable one keeps nothing. Outputs against numpy, into a channel slice of a
    concatenation (SqueezeNet's expand convs) too."""
    inp = tlkit.Input((5, 7, 24))
    left = L.Conv2D(40, 1, activation="relu", use_bias=use_bias)
    right = L.Conv2D(36, 1, use_bias=use_bias)
    model = tlkit.Model(inp, L.Concatenate()([left(inp), right(inp)]))
    x = rng.standard_normal((2, 5, 7, 24)).astype(np.float32)

    def want():
        ys = []
        for layer, relu in ((left, True), (right, False)):
            w = layer.get_weights()
            y = ref_forward(x, w[0], w[1] if use_bias else None, (1, 1), "valid", (1, 1))
            ys.append(np.maximum(y, 0) if relu else y)
        return np.concatenate(ys, axis=-1)

    model.trainable = False
    for _ in range(2):
        close(np.asarray(model.predict_on_batch(x)), want())
    kept = getattr(left, "_packed_cache", None)
    assert (kept is not None) == gemm_blocks.worth_it(24, 40)
    left.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in left.get_weights()])
    right.kernel.assign(rng.standard_normal(right.kernel.shape).astype(np.float32))
    for _ in range(2):
        close(np.asarray(model.predict_on_batch(x)), want())
    model.trainable = True
    close(np.asarray(model.predict_on_batch(x)), want())
    assert left._packed_cache is None
