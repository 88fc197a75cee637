"""Winograd convs whose transformed filter is not kept: transformed a group of its planes at a time
inside each chunk (winograd_filters.FILTER_BLOCK_BYTES), against the float64 numpy reference."""
import numpy as np
import pytest

import tlkit
from tests.engine.kernels.test_conv_kernels import close, ref_forward
from tlkit import layers
from tlkit.engine.kernels import conv, winograd, winograd_filters, winograd_products


@pytest.fixture
def blocks_of_16(monkeypatch):
    """A 24 -> 40 filter is not kept and is transformed 2 rows of G (12 planes) at a time, and the
    forward runs as several chunks; the products through BLAS (winograd_products has its own tests)."""
    monkeypatch.setattr(winograd_products, "ENABLED", False)
    monkeypatch.setattr(winograd_filters, "FILTER_BLOCK_BYTES", 36 * 24 * 16 * 4)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 36 * 2 * 64 * 4)  # a row of tiles a chunk
    monkeypatch.setattr(winograd, "MIN_TILES", 1)
    monkeypatch.setattr(winograd, "THREADED", False)


def test_filter_groups_fit_the_budget_and_divide_the_rows(monkeypatch):
    assert winograd_filters.rows_per_group(512, 512) == 1  # 8 MB: one row of G, 6 planes, 6.3 MB
    assert winograd_filters.rows_per_group(256, 256) == 3
    assert winograd_filters.rows_per_group(256, 512) == 2
    assert not winograd_filters.cached_filter_wanted(256, 256)
    assert winograd_filters.cached_filter_wanted(128, 128)
    monkeypatch.setattr(winograd_filters, "FILTER_BLOCK_BYTES", 36 * 24 * 16 * 4)
    assert winograd_filters.rows_per_group(24, 40) == 2
    assert not winograd_filters.cached_filter_wanted(24, 40)
    assert winograd_filters.cached_filter_wanted(24, 16)


@pytest.mark.parametrize("i0, rows", [(0, 6), (0, 1), (2, 3), (5, 1)])
def test_filter_transform_of_a_group_of_rows_is_those_planes(rng, i0, rows):
    w = rng.standard_normal((3, 3, 5, 40)).astype(np.float32)
    u = np.empty((6 * rows, 5, 40), np.float32)
    winograd_filters.filter_transform(w, i0, u)
    want = np.einsum("ai,ijcf,bj->abcf", winograd.G, w.astype(np.float64), winograd.G).reshape(36, 5, 40)
    np.testing.assert_allclose(u, want[6 * i0:6 * (i0 + rows)], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("x_shape, f, padding", [((3, 13, 11, 24), 40, "same"), ((2, 10, 9, 24), 40, "valid")])
def test_blocked_forward_matches_reference(x_shape, f, padding, rng, blocks_of_16, monkeypatch):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal((3, 3, x_shape[3], f)) * 0.2).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    calls = []
    real = winograd_filters.filter_transform
    # without a kept filter, each chunk transforms the filter 12 planes at a time, never whole
    monkeypatch.setattr(winograd, "filter_transform", lambda w_, i0, u: calls.append((i0, u.shape)) or real(w_, i0, u))
    got = conv.conv2d_forward(x, w, b, padding=padding, relu=True)
    close(got, ref_forward(x, w, b, (1, 1), padding, (1, 1), relu=True), rtol=2e-5)
    assert calls and all(shape == (12, x_shape[3], f) for _, shape in calls)
    assert [i0 for i0, _ in calls[:3]] == [0, 2, 4] and len(calls) % 3 == 0 and len(calls) > 3  # several chunks


def frozen_conv_model(channels, filters, pool):
    inputs = tlkit.Input((12, 12, channels))
    y = layers.Conv2D(filters, 3, padding="same", activation="relu", name="conv")(inputs)
    if pool:
        y = layers.MaxPooling2D(2)(y)
    model = tlkit.Model(inputs, y)
    model.trainable = False
    return model


@pytest.mark.parametrize("pool", [False, True], ids=["conv", "conv_pool"])
def test_frozen_conv_keeps_only_small_transformed_filters(rng, blocks_of_16, pool):
    """A frozen conv keeps its transformed filter when small; a large one is not held between calls
    (the forward transforms it in blocks) and still computes the conv."""
    x = rng.standard_normal((2, 12, 12, 24)).astype(np.float32)
    for filters, kept in ((16, True), (40, False)):
        model = frozen_conv_model(24, filters, pool)
        conv_layer = model.get_layer("conv")
        w, b = (v.astype(np.float64) for v in conv_layer.get_weights())
        want = np.maximum(ref_forward(x, w, b, (1, 1), "same", (1, 1)), 0)
        if pool:
            want = want.reshape(2, 6, 2, 6, 2, filters).max(axis=(2, 4))
        for _ in range(2):
            close(model.predict_on_batch(x), want, rtol=2e-5)
        cache = getattr(conv_layer, "_wino_cache", None)
        assert (cache is not None) == kept
        if kept:
            assert cache[1].shape == (36, 24, filters)


def test_vgg_sized_frozen_conv_holds_no_transformed_filter(rng):
    """At the default budget, a frozen 512 -> 512 conv (VGG16's block 4-5) holds no 36 x 512 x 512 transform."""
    model = frozen_conv_model(512, 512, pool=False)
    x = rng.standard_normal((1, 12, 12, 512)).astype(np.float32)
    y = model.predict_on_batch(x)
    conv_layer = model.get_layer("conv")
    assert getattr(conv_layer, "_wino_cache", None) is None
    w, b = (v.astype(np.float64) for v in conv_layer.get_weights())
    close(y, np.maximum(ref_forward(x, w, b, (1, 1), "same", (1, 1)), 0), rtol=2e-5)
