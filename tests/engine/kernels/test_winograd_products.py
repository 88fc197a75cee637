"""Winograd's products through gemm_blocks' micro-kernel on packed planes (kernels/winograd_products.py),
against numpy float64: the packing, the filter transform written into panels, and the forward and
input-gradient convs on both product routes, every chunking."""
import numpy as np
import pytest

from tests.engine.kernels.test_conv_kernels import close, ref_backward, ref_forward
from tlkit.engine.kernels import conv, gemm_blocks, host_cpu, winograd, winograd_filters, winograd_products
from tlkit.utils import threads


def test_packed_planes_multiply_like_the_stack(rng):
    """Odd sizes: rows not a multiple of the block's, columns not a multiple of a panel's (zero padding)."""
    for t, c, f in ((13, 7, 40), (29, 24, 70), (6, 64, 129)):
        u = rng.standard_normal((36, c, f)).astype(np.float32)
        v = rng.standard_normal((36, t + 3, c)).astype(np.float32)
        m = np.full((36, t + 3, f), np.nan, np.float32)
        planes = winograd_products.pack_planes(u)
        assert planes.panels.shape[1] * planes.panels.shape[3] >= f
        winograd_products.products(v, t, planes, m)
        want = np.matmul(v[:, :t].astype(np.float64), u.astype(np.float64))
        close(m[:, :t], want)
        assert np.isnan(m[:, t:]).all()  # rows past t untouched


def test_a_range_of_planes_writes_only_those(rng):
    u = rng.standard_normal((36, 9, 33)).astype(np.float32)
    v = rng.standard_normal((36, 11, 9)).astype(np.float32)
    m = np.full((36, 11, 33), np.nan, np.float32)
    winograd_products.products(v, 11, winograd_products.pack_planes(u[12:18]), m, 12)
    close(m[12:18], np.matmul(v[12:18].astype(np.float64), u[12:18].astype(np.float64)))
    assert np.isnan(m[:12]).all() and np.isnan(m[18:]).all()


@pytest.mark.parametrize("i0, rows", [(0, 6), (2, 3), (5, 1)])
def test_filter_transform_into_panels_is_the_transform(rng, i0, rows):
    c, f = 5, 70
    w = rng.standard_normal((3, 3, c, f)).astype(np.float32)
    planes = winograd_products.new_planes(6 * rows, c, f)
    planes.panels[...] = np.nan  # every float written: padding columns too
    winograd_products.transform(w, i0, planes)
    want = np.einsum("ai,ijcf,bj->abcf", winograd.G, w.astype(np.float64), winograd.G).reshape(36, c, f)
    p, nr = planes.panels.shape[1], planes.panels.shape[3]
    unpacked = planes.panels.transpose(0, 2, 1, 3).reshape(6 * rows, c, p * nr)
    np.testing.assert_allclose(unpacked[:, :, :f], want[6 * i0:6 * (i0 + rows)], rtol=1e-6, atol=1e-6)
    assert (unpacked[:, :, f:] == 0).all()


def test_kept_planes_follow_the_array(rng):
    u = rng.standard_normal((36, 8, 16)).astype(np.float32)
    first = winograd_products.kept_planes(u)
    assert winograd_products.kept_planes(u) is first
    other = u.copy()
    assert winograd_products.kept_planes(other) is not first


def test_preferred_only_on_full_width_cpus(monkeypatch):
    monkeypatch.setattr(winograd_products, "ENABLED", None)
    monkeypatch.setattr(host_cpu, "full_width", lambda cpu=None: False)
    assert not winograd_products.preferred(64, 64)  # e.g. AMD: BLAS, as measured there
    monkeypatch.setattr(host_cpu, "full_width", lambda cpu=None: True)
    assert winograd_products.preferred(64, 64) == gemm_blocks.worth_it(64, 64)


@pytest.fixture(params=["chunks", "threaded", "groups"])
def route(request, monkeypatch):
    """The forward's three ways to its products: shared chunks (several, one spanning two images),
    whole chunks per thread (three threads), and without a kept filter, transformed 2 rows of G at a
    time in each chunk; the products forced through the micro-kernel, or through BLAS for comparison."""
    monkeypatch.setattr(winograd, "MIN_TILES", 1)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 36 * 2 * 4 * 80 * 4)
    monkeypatch.setattr(winograd, "THREADED", request.param == "threaded")
    monkeypatch.setattr(threads, "num_threads", lambda: 3)
    monkeypatch.setattr(winograd, "THREAD_BYTES", 40_000)
    if request.param == "groups":
        monkeypatch.setattr(winograd_filters, "FILTER_BLOCK_BYTES", 36 * 24 * 16 * 4)
        monkeypatch.setattr(winograd_products, "MIN_TILES_UNKEPT", 0)  # few tiles: still Winograd
    return request.param


@pytest.mark.parametrize("enabled", [True, False], ids=["gemm_blocks", "blas"])
@pytest.mark.parametrize("x_shape, f, padding", [((3, 13, 11, 24), 40, "same"), ((2, 10, 9, 24), 70, "valid")])
def test_forward_matches_reference(x_shape, f, padding, enabled, route, rng, monkeypatch):
    monkeypatch.setattr(winograd_products, "ENABLED", enabled)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal((3, 3, x_shape[3], f)) * 0.2).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    want = ref_forward(x, w, b, (1, 1), padding, (1, 1), relu=True)
    groups = []
    real = winograd_products.transform
    monkeypatch.setattr(winograd_products, "transform", lambda w_, i0, p: groups.append(p.panels.shape[0]) or real(
        w_, i0, p))
    close(conv.conv2d_forward(x, w, b, padding=padding, relu=True), want, rtol=2e-5)
    if enabled:  # the filter transformed into panels: whole once, or a group of planes at a time in each chunk
        group = 6 * winograd_filters.rows_per_group(x_shape[3], f)
        if route == "groups":
            assert group < 36 and set(groups) == {group} and len(groups) > 36 // group  # several chunks
        else:
            assert groups == [36]
    u = winograd.transform_filter(w)  # a kept filter (a frozen layer's), twice: its packing reused
    for _ in range(2):
        close(conv.conv2d_forward(x, w, b, padding=padding, relu=True, wino_filter=u), want, rtol=2e-5)
    pooled = conv.conv2d_maxpool_forward(x, w, b, padding=padding, relu=True, pool_size=2)
    oh, ow = want.shape[1] // 2 * 2, want.shape[2] // 2 * 2
    close(pooled, want[:, :oh, :ow].reshape(x_shape[0], oh // 2, 2, ow // 2, 2, f).max(axis=(2, 4)), rtol=2e-5)


def test_input_gradient_matches_reference(route, rng, monkeypatch):
    monkeypatch.setattr(winograd_products, "ENABLED", True)
    x = rng.standard_normal((2, 12, 10, 24)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 24, 40)) * 0.2).astype(np.float32)
    dy = rng.standard_normal((2, 12, 10, 40)).astype(np.float32)
    dx_ref, _, _ = ref_backward(x, w, dy, (1, 1), "same", (1, 1))
    close(conv.conv2d_backward_input(dy, w, x.shape, padding="same"), dx_ref, rtol=2e-5)


def test_routing_rules_of_the_micro_kernel_route(monkeypatch):
    """Small filters run as whole chunks per thread; a filter transformed in every call (not given, too
    large to keep) over few tiles goes to im2col; neither rule off this route."""
    monkeypatch.setattr(winograd_products, "ENABLED", True)
    assert winograd_products.per_thread(64, 128) and not winograd_products.per_thread(512, 512)
    assert winograd.few_tiles(1, 14, 14, 512, 512, kept=False)  # 16 tiles
    assert not winograd.few_tiles(1, 14, 14, 512, 512, kept=True)
    assert not winograd.few_tiles(1, 14, 14, 64, 64, kept=False)  # kept when small: cached_filter_wanted
    assert not winograd.few_tiles(1, 28, 28, 512, 512, kept=False)  # 49 tiles
    monkeypatch.setattr(winograd_products, "ENABLED", False)
    assert not winograd_products.per_thread(64, 128)
    assert not winograd.few_tiles(1, 14, 14, 512, 512, kept=False)


def test_few_tiles_without_a_kept_filter_match_reference(rng, monkeypatch):
    """The im2col route taken for them, alone and with its max pool, against float64."""
    monkeypatch.setattr(winograd_products, "ENABLED", True)
    monkeypatch.setattr(winograd_filters, "FILTER_BLOCK_BYTES", 36 * 24 * 16 * 4)  # 24 -> 40 is not kept
    monkeypatch.setattr(winograd_products, "MIN_TILES_UNKEPT", 64)
    x = rng.standard_normal((2, 10, 9, 24)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 24, 40)) * 0.2).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    assert winograd.few_tiles(2, 10, 9, 24, 40, kept=False)
    monkeypatch.setattr(winograd, "conv3x3", None)  # never reached
    want = ref_forward(x, w, b, (1, 1), "same", (1, 1), relu=True)
    close(conv.conv2d_forward(x, w, b, padding="same", relu=True), want, rtol=2e-5)
    pooled = conv.conv2d_maxpool_forward(x, w, b, padding="same", relu=True, pool_size=2)
    close(pooled, want[:, :10, :8].reshape(2, 5, 2, 4, 2, 40).max(axis=(2, 4)), rtol=2e-5)


# Packs a transformed filter, runs the 36 products through the stacked driver, checks them against float64
# numpy, and prints whether the driver came from numba's cache.
CACHE_PROBE = """
import json
import numpy as np
from tlkit.engine.kernels import winograd_products as wp
rng = np.random.default_rng(0)
w = rng.standard_normal((3, 3, 24, 40)).astype(np.float32)
planes = wp.planes_for(w, None)
v = rng.standard_normal((36, 11, 24)).astype(np.float32)
m = np.full((36, 11, 40), np.nan, np.float32)
wp.products(v, 11, planes, m)
kept = np.stack([planes.panels[k].transpose(1, 0, 2).reshape(24, -1)[:, :40] for k in range(36)])
want = np.einsum("ktc,kcf->ktf", v.astype(np.float64), kept.astype(np.float64))
stacked = wp._stacked_driver(planes.mr, planes.nv, planes.w)
print(json.dumps([float(np.abs(m - want).max() / np.abs(want).max()), sum(stacked.stats.cache_hits.values())]))
"""


def test_a_second_process_loads_the_stacked_products_from_the_cache():
    """The stacked driver names gemm_blocks' driver by its kernel_key, not by the dispatcher (whose pickled
    closure differs in every process): a second process loads it from numba's cache and computes right."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", CACHE_PROBE], capture_output=True, text=True, cwd=REPO,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert all(error < 1e-5 for error, _ in runs)
    assert runs[1][1] == 1  # loaded, not compiled again
