"""The 3x3 RGB stem kernels (kernels/stem_conv.py: direct, or patches + gemm_blocks): against a float64 numpy reference (strides 1
and 2 each way, TF 'same' and 'valid', odd sizes and widths that leave a partial block of pixels,
filter counts that are not a multiple of the padded vector width, more filters than one pass takes,
bounds or none, an output buffer full of NaN), and MobileNetV2's stem (Conv2D -> BatchNormalization
-> ReLU6) through the inference plan against the layers run one by one and the conv.py route."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.kernels import stem_conv
from tlkit.engine.kernels.geometry import pads


def reference_conv(x, w, b, strides, padding, low, high):
    """float64 clip(conv(x, w) + b, low, high) by explicit windows (TF 'same' pads)."""
    sh, sw = strides
    (top, bottom), (left, right) = (pads(x.shape[1], 3, sh, padding), pads(x.shape[2], 3, sw, padding))
    xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh = (xp.shape[1] - 3) // sh + 1
    ow = (xp.shape[2] - 3) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(3):
        for j in range(3):
            y += xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] @ w[i, j].astype(np.float64)
    y += b
    return np.clip(y, -np.inf if low is None else low, np.inf if high is None else high)


@pytest.mark.parametrize("shape, filters, strides, padding, clip", [
    ((2, 17, 23, 3), 32, (2, 2), "same", (0.0, 6.0)),
    ((1, 9, 10, 3), 16, (2, 2), "same", (0.0, 6.0)),
    ((3, 8, 13, 3), 5, (1, 2), "valid", None),
    ((1, 7, 6, 3), 48, (1, 1), "same", (0.0, None)),
    ((2, 11, 14, 3), 70, (2, 1), "valid", (-1.0, 1.5)),
    ((1, 3, 3, 3), 8, (2, 2), "valid", (0.0, 6.0)),
])
@pytest.mark.parametrize("route", ["products", "one row a product", "products, 8 lanes", "direct"])
def test_stem_conv_matches_float64_reference(shape, filters, strides, padding, clip, route, monkeypatch):
    """Both routes: gathered patches through gemm_blocks (a few rows a product, or one; AVX2's 8 lanes, which
    run on any CPU with AVX-512 too), the direct kernel."""
    monkeypatch.setattr(stem_conv, "PRODUCTS", route != "direct")
    if route == "one row a product":
        monkeypatch.setattr(stem_conv, "PATCH_BYTES", 1)
    if route == "products, 8 lanes":
        monkeypatch.setattr(stem_conv.gemm_blocks, "lanes", lambda: 8)
    rng = np.random.default_rng(sum(shape) + filters)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((3, 3, 3, filters)) / 5).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    ref = reference_conv(x, w, b, strides, padding, *(clip or (None, None)))
    out = np.full(ref.shape, np.nan, np.float32)  # a reused buffer: every element must be written
    y = stem_conv.folded_conv(x, w, b, strides, padding, (1, 1), clip, out)
    assert y is out
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    fresh = stem_conv.folded_conv(x, w, None, strides, padding, (1, 1), None)
    np.testing.assert_allclose(fresh, reference_conv(x, w, np.zeros(filters), strides, padding, None, None),
                               rtol=1e-5, atol=1e-5)


def test_stem_conv_declines_what_it_does_not_compute():
    x = np.zeros((1, 8, 8, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.float32)
    assert stem_conv.folded_conv(x, np.zeros((3, 3, 4, 4), np.float32), None, (2, 2), "same", (1, 1), None) is None
    assert stem_conv.folded_conv(x, np.zeros((5, 5, 3, 4), np.float32), None, (2, 2), "same", (1, 1), None) is None
    assert stem_conv.folded_conv(x, w, None, (3, 3), "same", (1, 1), None) is None
    assert stem_conv.folded_conv(x, w, None, (1, 1), "same", (2, 2), None) is None
    assert stem_conv.folded_conv(x.astype(np.float64), w, None, (2, 2), "same", (1, 1), None) is None
    wrong_out = np.zeros((1, 3, 3, 4), np.float32)
    assert stem_conv.folded_conv(x, w, None, (2, 2), "same", (1, 1), None, wrong_out) is None


def stem_model(alpha_filters, size):
    inputs = tlkit.Input((size, size + 3, 3))
    y = L.Conv2D(alpha_filters, 3, strides=2, padding="same", use_bias=False, name="Conv1")(inputs)
    y = L.BatchNormalization(name="bn_Conv1")(y)
    y = L.ReLU(6.0, name="Conv1_relu")(y)
    y = L.Conv2D(8, 1, name="next")(y)  # a consumer, so the stem's output is a buffer of the plan
    model = tlkit.Model(inputs, y)
    rng = np.random.default_rng(alpha_filters)
    for weight in model.weights:
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(np.float32) if "variance" in weight.name
                      else (rng.standard_normal(weight.shape) / 3).astype(np.float32))
    model.trainable = False
    return model


@pytest.mark.parametrize("filters, size", [(32, 21), (16, 14)])
def test_stem_through_the_inference_plan_matches_layer_by_layer(filters, size, monkeypatch):
    model = stem_model(filters, size)
    x = np.random.default_rng(1).uniform(-1, 1, (3, size, size + 3, 3)).astype(np.float32)
    calls = []
    kernel = stem_conv.stem_conv
    monkeypatch.setattr(stem_conv, "stem_conv", lambda *args: calls.append(1) or kernel(*args))
    fused = model.predict_on_batch(x).copy()
    assert calls, "the folded stem did not take the direct kernel"
    with tlkit.GradientTape():  # the layers one by one (no folding, no fusion)
        layered = np.asarray(model(x, training=False))
    np.testing.assert_allclose(fused, layered, rtol=1e-4, atol=1e-4)
    try:
        stem_conv.ENABLED = False  # conv.py's im2col route with the clip as a second pass
        other = model.predict_on_batch(x).copy()
    finally:
        stem_conv.ENABLED = True
    np.testing.assert_allclose(fused, other, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("band_bytes", [1 << 20, 6 << 10, 1])
@pytest.mark.parametrize("stem_strides, dw_stride, k, filters", [((2, 2), 1, 3, 16), ((1, 1), 2, 3, 24),
                                                                 ((2, 1), 1, 5, 20), ((2, 2), 2, 5, 16)])
def test_block_with_the_stem_as_its_expanded_rows(monkeypatch, band_bytes, stem_strides, dw_stride, k, filters):
    """mbconv_bands with a StemRows in place of the expand product (MobileNetV2's Conv1 + expanded_conv):
    against the float64 stem then the float64 block, odd sizes, TF 'same' everywhere, whole images
    grouped (1 MB), bands of 1-3 rows whose halo rows move from band to band (6 KB, 1 byte), one and two
    threads, the scratch buffers poisoned with NaN."""
    from test_inverted_residuals import reference_block, same_pads, weights

    from tlkit.engine.kernels import mbconv_bands

    monkeypatch.setattr(mbconv_bands, "BAND_BYTES", band_bytes)
    rng = np.random.default_rng(band_bytes % 97 + k + filters)
    x = rng.standard_normal((3, 15, 13, 3)).astype(np.float32)
    sw = (rng.standard_normal((3, 3, 3, filters)) / 5).astype(np.float32)
    sb = rng.standard_normal(filters).astype(np.float32)
    stem_ref = reference_conv(x, sw, sb, stem_strides, "same", 0.0, 6.0)
    _, dk, db, project = weights(rng, filters, None, 8, k)
    zero_pads = same_pads(stem_ref.shape[1:3], k, dw_stride)
    expected = reference_block(stem_ref, None, dk, db, (dw_stride, dw_stride), zero_pads, project, None)
    top = pads(x.shape[1], 3, stem_strides[0], "same")[0]
    left = pads(x.shape[2], 3, stem_strides[1], "same")[0]
    stem = stem_conv.StemRows(sw, sb, 0.0, 6.0, stem_strides, top, left, stem_ref.shape[1:3])
    six, zero, inf = np.float32(6.0), np.float32(0.0), np.float32(np.inf)
    for parts in (1, 2):
        mbconv_bands._scratch.expanded = np.full(1 << 16, np.nan, np.float32)
        mbconv_bands._scratch.depthwise = np.full(1 << 16, np.nan, np.float32)
        out = np.full(expected.shape, np.nan, np.float32)
        mbconv_bands.inverted_residual(x, None, (dk, db, zero, six, (dw_stride, dw_stride), zero_pads[0][0],
                                                 zero_pads[1][0]), project + (-inf, inf), None, out, parts, stem)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sh,sw,top,left", [(2, 2, 0, 0), (1, 1, 1, 1), (2, 1, 1, 0), (1, 2, 0, 1)])
def test_rgb_patches_are_the_windows(rng, sh, sw, top, left):
    """im2col.rgb3x3_patches: each row is its output pixel's 27 taps (kernel row, column, channel), zeros
    outside the image, for rows in the middle of the second image and at its borders (odd sizes)."""
    from tlkit.engine.kernels.im2col import rgb3x3_patches

    x = rng.standard_normal((2, 9, 11, 3)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (top, 3), (left, 3), (0, 0)))
    oh, ow = (9 + top + 1 - 3) // sh + 1, (11 + left + 1 - 3) // sw + 1
    for r0, r1 in [(0, 2), (1, oh - 1), (oh - 2, oh)]:
        p = np.full(((r1 - r0) * ow, 27), np.nan, np.float32)
        rgb3x3_patches(x, sh, sw, top, left, 1, r0, r1, ow, p)
        expected = np.stack([xp[1, r * sh:r * sh + 3, c * sw:c * sw + 3].reshape(27)
                             for r in range(r0, r1) for c in range(ow)])
        np.testing.assert_array_equal(p, expected)
