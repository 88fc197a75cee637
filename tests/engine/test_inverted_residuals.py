"""Inverted-residual blocks (expand 1x1 -> depthwise -> project 1x1, each with its BatchNormalization)
fused over bands of rows at inference (engine/inverted_residuals.py, kernels/mbconv_bands.py): the
band kernel against a float64 numpy reference (strides 1 and 2, 3x3 and 5x5, TF 'same' and absorbed
zero padding, odd sizes, many small bands and their borders, groups of whole images, no expand conv,
with and without the residual), and models through the inference plan against the same layers run
one by one."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit import ops
from tlkit.engine import inverted_residuals
from tlkit.engine.kernels import mbconv_bands
from tlkit.engine.kernels.geometry import pads

from test_depthwise_layers import reference_depthwise

INF = np.float32(np.inf)


def reference_block(x, expand, k, kb, strides, zero_pads, project, residual):
    """float64: clip(x @ we + be, 0, 6) -> zero-pad, depthwise, + kb, clip(0, 6) -> @ wp + bp (+ residual)."""
    e = x.astype(np.float64)
    if expand is not None:
        e = np.clip(e @ expand[0] + expand[1], 0.0, 6.0)
    e = np.pad(e, ((0, 0),) + tuple(zero_pads) + ((0, 0),))
    d = np.clip(reference_depthwise(e, k[..., None], strides, "valid") + kb, 0.0, 6.0)
    y = d @ project[0] + project[1]
    return y if residual is None else y + residual


def weights(rng, c, e, f, k):
    expand = None if e is None else ((rng.standard_normal((c, e)) / np.sqrt(c)).astype(np.float32),
                                     rng.standard_normal(e).astype(np.float32))
    e = c if e is None else e
    dk = (rng.standard_normal((k, k, e)) / k).astype(np.float32)
    db = rng.standard_normal(e).astype(np.float32)
    project = ((rng.standard_normal((e, f)) / np.sqrt(e)).astype(np.float32), rng.standard_normal(f).astype(np.float32))
    return expand, dk, db, project


def run_kernel(x, expand, dk, db, strides, zero_pads, project, residual, parts=None):
    (top, bottom), (left, right) = zero_pads
    kh = dk.shape[0]
    oh = (x.shape[1] + top + bottom - kh) // strides[0] + 1
    ow = (x.shape[2] + left + right - kh) // strides[1] + 1
    out = np.full((x.shape[0], oh, ow, project[0].shape[1]), np.nan, np.float32)
    six, zero = np.float32(6.0), np.float32(0.0)
    mbconv_bands.inverted_residual(
        x, None if expand is None else expand + (zero, six), (dk, db, zero, six, strides, top, left),
        project + (-INF, INF), residual, out, parts)
    return out


def same_pads(size, k, s):
    return pads(size[0], k, s, "same"), pads(size[1], k, s, "same")


@pytest.mark.parametrize("band_bytes", [1 << 20, 12 << 10, 1])
@pytest.mark.parametrize("s,k,c,e,f,res", [(1, 3, 8, 48, 8, True), (2, 3, 8, 40, 12, False), (1, 5, 16, 32, 16, True),
                                           (2, 5, 12, 36, 20, False), (1, 3, 24, None, 16, False),
                                           (2, 3, 17, None, 9, False)])
def test_band_kernel_matches_numpy(rng, monkeypatch, band_bytes, s, k, c, e, f, res):
    """TF 'same' padding on odd sizes; band_bytes 1 MB (whole images, grouped), 12 KB (bands of a few
    rows: halo rows moved from band to band) and 1 byte (one output row a band)."""
    monkeypatch.setattr(mbconv_bands, "BAND_BYTES", band_bytes)
    x = rng.standard_normal((3, 13, 11, c)).astype(np.float32)
    expand, dk, db, project = weights(rng, c, e, f, k)
    zero_pads = same_pads(x.shape[1:3], k, s)
    oh, ow = -(-13 // s), -(-11 // s)
    residual = rng.standard_normal((3, oh, ow, f)).astype(np.float32) if res else None
    expected = reference_block(x, expand, dk, db, (s, s), zero_pads, project, residual)
    for parts in (1, 2):
        y = run_kernel(x, expand, dk, db, (s, s), zero_pads, project, residual, parts)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("zero_pads", [((0, 1), (0, 1)), ((1, 1), (1, 1)), ((2, 0), (0, 2))])
@pytest.mark.parametrize("band_bytes", [1 << 20, 4 << 10])
def test_absorbed_zero_padding(rng, monkeypatch, zero_pads, band_bytes):
    """MobileNetV2's stride-2 blocks: a ZeroPadding2D then a 'valid' depthwise conv (uneven pads too)."""
    monkeypatch.setattr(mbconv_bands, "BAND_BYTES", band_bytes)
    x = rng.standard_normal((2, 14, 9, 8)).astype(np.float32)
    expand, dk, db, project = weights(rng, 8, 48, 16, 3)
    expected = reference_block(x, expand, dk, db, (2, 2), zero_pads, project, None)
    np.testing.assert_allclose(run_kernel(x, expand, dk, db, (2, 2), zero_pads, project, None), expected,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("gemm", [True, False])
@pytest.mark.parametrize("s,k,c,e,f,res,size", [(1, 3, 8, 48, 8, True, (7, 7)), (2, 3, 8, 40, 12, False, (13, 11)),
                                                (1, 5, 16, 32, 16, True, (9, 13)), (2, 5, 12, 36, 20, False, (7, 7)),
                                                (1, 3, 24, None, 16, False, (5, 9)), (2, 3, 17, None, 9, False, (11, 5))])
def test_one_image_one_band_on_one_thread(rng, monkeypatch, gemm, s, k, c, e, f, res, size):
    """Batch 1 on one thread whose image is one band (the 7x7-28x28 blocks at batch 1): the products called
    straight (mbconv_bands._whole_image), through gemm_blocks or BLAS, against the float64 reference."""
    from tlkit.engine.kernels import gemm_blocks

    monkeypatch.setattr(gemm_blocks, "ENABLED", gemm)
    taken = []
    real = mbconv_bands._whole_image
    monkeypatch.setattr(mbconv_bands, "_whole_image", lambda *a: taken.append(1) or real(*a))
    x = rng.standard_normal((1,) + size + (c,)).astype(np.float32)
    expand, dk, db, project = weights(rng, c, e, f, k)
    zero_pads = same_pads(size, k, s)
    oh, ow = -(-size[0] // s), -(-size[1] // s)
    residual = rng.standard_normal((1, oh, ow, f)).astype(np.float32) if res else None
    expected = reference_block(x, expand, dk, db, (s, s), zero_pads, project, residual)
    np.testing.assert_allclose(run_kernel(x, expand, dk, db, (s, s), zero_pads, project, residual, 1), expected,
                               rtol=1e-4, atol=1e-4)
    assert taken == [1]
    # larger than a band: the bands' path
    monkeypatch.setattr(mbconv_bands, "BAND_BYTES", 1)
    np.testing.assert_allclose(run_kernel(x, expand, dk, db, (s, s), zero_pads, project, residual, 1), expected,
                               rtol=1e-4, atol=1e-4)
    assert taken == [1]


def test_pieces_cover_every_output_row_once(monkeypatch):
    for n, h, oh, s, band_bytes in [(3, 13, 13, 1, 5000), (2, 14, 7, 2, 3000), (32, 7, 7, 1, 1 << 20), (1, 9, 5, 2, 1)]:
        monkeypatch.setattr(mbconv_bands, "BAND_BYTES", band_bytes)
        pieces, _, _ = mbconv_bands._pieces(n, h, 6, 16, oh, 6, s, 3, 2)
        covered = np.zeros((n, oh), int)
        for n0, n1, r0, r1 in pieces:
            covered[n0:n1, r0:r1] += 1
        assert (covered == 1).all()


def set_bn(rng, bn, channels):
    bn.set_weights([rng.uniform(0.5, 2, channels).astype(np.float32), rng.standard_normal(channels).astype(np.float32),
                    0.3 * rng.standard_normal(channels).astype(np.float32),
                    rng.uniform(0.5, 2, channels).astype(np.float32)])


def conv_bn(x, layer, name, relu=True):
    x = L.BatchNormalization(name=name + "_bn")(layer(x))
    return L.ReLU(6.0, name=name + "_relu")(x) if relu else x


def block(x, channels, expansion, filters, k, stride, name, padded):
    inp = x
    if expansion != 1:
        x = conv_bn(x, L.Conv2D(channels * expansion, 1, use_bias=False, name=name + "_expand"), name + "_expand")
    if padded and stride == 2:
        x = L.ZeroPadding2D(((0, 1), (0, 1)), name=name + "_pad")(x)
        dw = L.DepthwiseConv2D(k, strides=2, padding="valid", use_bias=False, name=name + "_dw")
    else:
        dw = L.DepthwiseConv2D(k, strides=stride, padding="same", use_bias=False, name=name + "_dw")
    x = conv_bn(x, dw, name + "_dw")
    x = conv_bn(x, L.Conv2D(filters, 1, padding="same", use_bias=False, name=name + "_project"), name + "_project",
                relu=False)
    return L.Add(name=name + "_add")([inp, x]) if stride == 1 and channels == filters else x


def small_net(rng, padded):
    """A MobileNetV2 / EfficientNet-Lite-like stack: an expand-ratio-1 block, stride-2 blocks (zero
    padding + 'valid', or TF 'same'), residual blocks, a 5x5 block, on an odd input size."""
    inp = tlkit.Input((23, 19, 3))
    x = conv_bn(inp, L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem"), "stem")
    x = block(x, 16, 1, 8, 3, 1, "b0", padded)
    x = block(x, 8, 6, 16, 3, 2, "b1", padded)
    x = block(x, 16, 4, 16, 3, 1, "b2", padded)
    x = block(x, 16, 6, 24, 5, 2, "b3", padded)
    x = block(x, 24, 6, 24, 5, 1, "b4", padded)
    model = tlkit.Model(inp, L.GlobalAveragePooling2D()(x))
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            set_bn(rng, layer, layer.gamma.shape[0])
    return model


def graph_of(model):
    return next(v for v in vars(model).values() if hasattr(v, "plan"))


@pytest.fixture
def fused_calls(monkeypatch):
    calls = []
    real = mbconv_bands.inverted_residual

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)
    monkeypatch.setattr(mbconv_bands, "inverted_residual", spy)
    return calls


@pytest.mark.parametrize("padded", [True, False])
def test_model_fused_matches_layer_by_layer(rng, monkeypatch, fused_calls, padded):
    """Every block found and run fused; outputs equal the layers run one by one (the plan's other
    fusions) within float32 tolerance, at batch 1 and with bands smaller than an image."""
    model = small_net(rng, padded)
    model.trainable = False
    blocks = graph_of(model).plan.blocks.values()
    # every block expands: the expand-ratio-1 block's expanded rows are the stem conv's (kernels/stem_conv.py)
    assert sorted(b.expand[0].layer.name for b in blocks) == ["b1_expand", "b2_expand", "b3_expand", "b4_expand",
                                                                "stem"]
    assert next(b for b in blocks if b.expand[0].layer.name == "stem").depthwise[0].layer.name == "b0_dw"
    assert sum(b.padder is not None for b in blocks) == (2 if padded else 0)
    for batch, band_bytes in [(5, 1 << 20), (1, 2 << 10)]:
        monkeypatch.setattr(mbconv_bands, "BAND_BYTES", band_bytes)
        x = rng.standard_normal((batch, 23, 19, 3)).astype(np.float32)
        monkeypatch.setattr(inverted_residuals, "ENABLED", False)
        expected = model.predict(x, verbose=0)
        assert not fused_calls
        monkeypatch.setattr(inverted_residuals, "ENABLED", True)
        for _ in range(2):  # the second call runs on recycled buffers
            np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)
        assert len(fused_calls) == 10
        fused_calls.clear()


def test_training_and_tapes_keep_the_layer_route(rng, fused_calls):
    """A trainable model's training forward (batch statistics) and a call under a recording tape run
    the layers one by one; inference on the same model is fused."""
    model = small_net(rng, True)
    x = rng.standard_normal((2, 23, 19, 3)).astype(np.float32)
    y_train = model(x, training=True)
    assert not fused_calls
    with tlkit.GradientTape() as tape:
        y = model(x)
        loss = ops.sum(y)
    assert not fused_calls
    assert tape.gradient(loss, model.trainable_weights[0]) is not None
    inferred = model.predict(x, verbose=0)
    assert len(fused_calls) == 5
    np.testing.assert_allclose(inferred, np.asarray(y), rtol=1e-4, atol=1e-4)
    assert not np.allclose(np.asarray(y_train), inferred, atol=1e-3)  # batch statistics differ


def test_shared_expanded_tensor_is_not_fused(rng, fused_calls):
    """A block whose expanded activation has a second reader keeps its expand conv out of the fusion."""
    inp = tlkit.Input((9, 9, 8))
    e = conv_bn(inp, L.Conv2D(32, 1, use_bias=False, name="e"), "e")
    d = conv_bn(e, L.DepthwiseConv2D(3, padding="same", use_bias=False, name="d"), "d")
    p = conv_bn(d, L.Conv2D(8, 1, use_bias=False, name="p"), "p", relu=False)
    model = tlkit.Model(inp, [p, L.GlobalAveragePooling2D()(e)])
    blocks = list(graph_of(model).plan.blocks.values())
    assert len(blocks) == 1 and blocks[0].expand is None
    x = rng.standard_normal((2, 9, 9, 8)).astype(np.float32)
    fused = model.predict(x, verbose=0)
    inverted_residuals.ENABLED = False
    try:
        expected = model.predict(x, verbose=0)
    finally:
        inverted_residuals.ENABLED = True
    for a, b in zip(fused, expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert len(fused_calls) == 1


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_zoo_bases_unchanged(rng, fused_calls, name):
    """The whole networks (random weights, frozen) give the same outputs fused as layer by layer."""
    from tlkit import zoo

    build = {"mobilenet_v2": zoo.MobileNetV2, "efficientnet_lite0": zoo.EfficientNetLite0}[name]
    model = build(weights=None, input_shape=(96, 80, 3), include_top=False, pooling="avg")
    model.trainable = False
    x = rng.uniform(-1, 1, (3, 96, 80, 3)).astype(np.float32)
    fused = model.predict(x, verbose=0)
    assert len(fused_calls) == {"mobilenet_v2": 17, "efficientnet_lite0": 16}[name]
    blocks = graph_of(model).plan.blocks.values()
    # all blocks: the expand-ratio-1 block's expanded rows are the stem conv's
    assert sum(b.expand is not None for b in blocks) == len(blocks)
    assert sum(b.expand[0].layer.kernel_size == (3, 3) for b in blocks) == 1
    inverted_residuals.ENABLED = False
    try:
        expected = model.predict(x, verbose=0)
    finally:
        inverted_residuals.ENABLED = True
    np.testing.assert_allclose(fused, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_kept_arguments_follow_weights_and_shapes(rng, monkeypatch, fused_calls):
    """A frozen model's blocks keep their folded arguments between calls; a new weight (set_weights on a
    conv, a BatchNormalization's statistics) or batch size is seen at the next call, as by the layers
    run one by one; a trainable model keeps nothing."""
    model = small_net(rng, True)
    model.trainable = False
    blocks = list(graph_of(model).plan.blocks.values())

    def check(x):
        fused = model.predict(x, verbose=0)
        monkeypatch.setattr(inverted_residuals, "ENABLED", False)
        expected = model.predict(x, verbose=0)
        monkeypatch.setattr(inverted_residuals, "ENABLED", True)
        np.testing.assert_allclose(fused, expected, rtol=1e-4, atol=1e-4)

    x = rng.standard_normal((1, 23, 19, 3)).astype(np.float32)
    check(x)
    check(x)
    assert all(getattr(b, "kept", None) is not None for b in blocks)
    expand = model.get_layer("b2_expand")
    expand.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in expand.get_weights()])
    set_bn(rng, model.get_layer("b4_project_bn"), 24)
    set_bn(rng, model.get_layer("stem_bn"), 16)
    check(x)
    check(rng.standard_normal((2, 23, 19, 3)).astype(np.float32))
    model.trainable = True
    for b in blocks:
        b.kept = None
    assert model.predict(x, verbose=0).shape == (1, 24)
    assert all(b.kept is None for b in blocks) and fused_calls


def test_compiled_replay_follows_weights(rng, monkeypatch):
    """Compiled steps replay the blocks on their kept arguments (inverted_residuals.replay), and fall back to
    run() when a weight changed: the outputs follow the new weights as the layers run one by one do."""
    model = small_net(rng, True)
    model.trainable = False
    replays = []
    real = inverted_residuals.replay
    monkeypatch.setattr(inverted_residuals, "replay", lambda *a: replays.append(real(*a)) or replays[-1])
    x = rng.standard_normal((1, 23, 19, 3)).astype(np.float32)
    for _ in range(3):
        model.predict(x, verbose=0)
    assert replays and all(replays)
    set_bn(rng, model.get_layer("b2_project_bn"), 16)
    replays.clear()
    fused = model.predict(x, verbose=0)
    assert replays.count(False) == 1  # the changed block, through run(), which keeps its new arguments
    monkeypatch.setattr(inverted_residuals, "ENABLED", False)
    np.testing.assert_allclose(fused, model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)
