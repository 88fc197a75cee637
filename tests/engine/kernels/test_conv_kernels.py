"""Convolution kernels against a slow, obviously-correct numpy reference (float64 loops over taps)."""
import numpy as np
import pytest

from tlkit.engine.kernels import conv, conv_chunks
from tlkit.utils import threads


def same_pads(size, k, s, d):
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return out, total // 2, total - total // 2


def geometry(size, k, s, d, padding):
    if padding == "same":
        return same_pads(size, k, s, d)
    return (size - (k - 1) * d - 1) // s + 1, 0, 0


def tap_slices(oh, ow, i, j, s, d):
    """The padded-input pixels tap (i, j) reads for every output pixel."""
    return (slice(None), slice(i * d[0], i * d[0] + (oh - 1) * s[0] + 1, s[0]),
            slice(j * d[1], j * d[1] + (ow - 1) * s[1] + 1, s[1]))


def ref_setup(x_shape, w_shape, s, padding, d):
    oh, pt, pb = geometry(x_shape[1], w_shape[0], s[0], d[0], padding)
    ow, pl, pr = geometry(x_shape[2], w_shape[1], s[1], d[1], padding)
    return oh, ow, ((0, 0), (pt, pb), (pl, pr), (0, 0))


def ref_forward(x, w, b, s, padding, d, relu=False):
    oh, ow, pad = ref_setup(x.shape, w.shape, s, padding, d)
    xp = np.pad(x.astype(np.float64), pad)
    y = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            y += xp[tap_slices(oh, ow, i, j, s, d)] @ w[i, j].astype(np.float64)
    if b is not None:
        y += b
    return np.maximum(y, 0) if relu else y


def ref_backward(x, w, dy, s, padding, d):
    oh, ow, pad = ref_setup(x.shape, w.shape, s, padding, d)
    xp = np.pad(x.astype(np.float64), pad)
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    dy = dy.astype(np.float64)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            sl = tap_slices(oh, ow, i, j, s, d)
            dxp[sl] += dy @ w[i, j].T.astype(np.float64)
            dw[i, j] = np.einsum("nhwc,nhwf->cf", xp[sl], dy)
    (_, _), (pt, pb), (pl, pr), _ = pad
    dx = dxp[:, pt:dxp.shape[1] - pb, pl:dxp.shape[2] - pr]
    return dx, dw, dy.sum((0, 1, 2))


# (x shape, (kh, kw, filters), strides, padding, dilation)
CASES = [
    ((1, 7, 9, 3), (3, 3, 4), (1, 1), "same", (1, 1)),
    ((3, 8, 11, 5), (3, 3, 2), (2, 2), "same", (1, 1)),
    ((3, 8, 11, 5), (3, 3, 2), (2, 2), "valid", (1, 1)),
    ((1, 9, 6, 1), (1, 1, 3), (1, 1), "valid", (1, 1)),
    ((3, 5, 7, 5), (1, 1, 4), (2, 2), "same", (1, 1)),
    ((1, 12, 10, 3), (7, 7, 5), (2, 2), "same", (1, 1)),
    ((1, 12, 10, 3), (7, 7, 2), (1, 1), "valid", (1, 1)),
    ((3, 10, 9, 5), (3, 3, 3), (1, 1), "same", (2, 2)),
    ((1, 11, 13, 3), (2, 2, 3), (1, 1), "same", (1, 1)),
    ((1, 6, 7, 1), (4, 3, 2), (2, 3), "valid", (1, 1)),
    ((3, 13, 8, 5), (5, 5, 3), (1, 1), "valid", (2, 1)),
    ((1, 4, 4, 2), (3, 3, 3), (3, 3), "same", (1, 1)),
]
IDS = [f"{c[0]}-k{c[1]}-s{c[2]}-{c[3]}-d{c[4]}" for c in CASES]


def make(case, rng):
    x_shape, (kh, kw, f), s, padding, d = case
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((kh, kw, x_shape[3], f)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    return x, w, b, s, padding, d


def close(got, want, rtol=1e-5):
    assert got.shape == want.shape
    scale = max(np.abs(want).max(), 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


@pytest.fixture(params=["default", "one_row", "few_images", "chunks", "chunks_one_row"])
def tile_bytes(request, monkeypatch):
    """Exercise every tiling: one row per tile, and several whole images per tile; on both routes
    (tiles in turn, or chunks shared by three threads whatever the machine has), forced."""
    chunked = request.param.startswith("chunks")
    monkeypatch.setattr(conv_chunks, "CHUNKED", chunked)
    monkeypatch.setattr(winograd, "THREADED", chunked)
    if chunked:
        monkeypatch.setattr(threads, "num_threads", lambda: 3)
        monkeypatch.setattr(conv_chunks, "CHUNK_BYTES", 1 if request.param == "chunks_one_row" else 40_000)
        monkeypatch.setattr(winograd, "THREAD_BYTES", 1 if request.param == "chunks_one_row" else 40_000)
        return
    size = {"default": conv.TILE_BYTES, "one_row": 1, "few_images": 40_000}[request.param]
    monkeypatch.setattr(conv, "TILE_BYTES", size)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_reference(case, rng, tile_bytes):
    x, w, b, s, padding, d = make(case, rng)
    for bias, relu in ((None, False), (b, True), (b, False)):
        y = conv.conv2d_forward(x, w, bias, s, padding, d, relu=relu)
        assert y.dtype == np.float32
        close(y, ref_forward(x, w, bias, s, padding, d, relu))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_matches_reference(case, rng, tile_bytes):
    x, w, _, s, padding, d = make(case, rng)
    dy = rng.standard_normal(conv.conv2d_forward(x, w, None, s, padding, d).shape).astype(np.float32)
    dx_ref, dw_ref, db_ref = ref_backward(x, w, dy, s, padding, d)
    close(conv.conv2d_backward_input(dy, w, x.shape, s, padding, d), dx_ref)
    dw, db = conv.conv2d_backward_weights(x, dy, w.shape, s, padding, d)
    close(dw, dw_ref)
    close(db, db_ref)


# ---------------------------------------------------------------------------------------------
# adjoint identity: <conv(x), dy> == <x, conv_backward_input(dy)>, and likewise for the kernel

@pytest.mark.parametrize("case", CASES[:6], ids=IDS[:6])
def test_backward_is_the_adjoint_of_forward(case, rng):
    x, w, _, s, padding, d = make(case, rng)
    y = conv.conv2d_forward(x, w, None, s, padding, d)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = conv.conv2d_backward_input(dy, w, x.shape, s, padding, d)
    dw, _ = conv.conv2d_backward_weights(x, dy, w.shape, s, padding, d)
    lhs = np.vdot(y.astype(np.float64), dy)
    np.testing.assert_allclose(np.vdot(x.astype(np.float64), dx), lhs, rtol=1e-4)
    np.testing.assert_allclose(np.vdot(w.astype(np.float64), dw), lhs, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Winograd F(4x4, 3x3)

from tlkit.engine.kernels import winograd, winograd_backward  # noqa: E402

WINO_CASES = [  # (x shape, filters, padding): partial tiles at the bottom/right, batch > 1
    ((2, 9, 14, 16), 16, "same"),
    ((1, 11, 8, 16), 24, "valid"),
    ((3, 8, 8, 32), 16, "same"),
]


@pytest.fixture
def small_chunks(monkeypatch):
    """Several chunks per call, chunks that span two images."""
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 36 * 3 * 4 * 40 * 4)
    monkeypatch.setattr(winograd, "MIN_TILES", 1)


@pytest.mark.parametrize("x_shape, f, padding", WINO_CASES)
def test_winograd_route_matches_reference(x_shape, f, padding, rng, small_chunks):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((3, 3, x_shape[3], f)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    assert winograd.applicable(x.shape, w.shape, (1, 1), (1, 1))
    close(conv.conv2d_forward(x, w, b, padding=padding, relu=True), ref_forward(x, w, b, (1, 1), padding, (1, 1), True),
          rtol=2e-5)
    u = conv.winograd_transform_filter(w)
    close(conv.conv2d_forward(x, w, b, padding=padding, wino_filter=u), ref_forward(x, w, b, (1, 1), padding, (1, 1)),
          rtol=2e-5)
    # backward-input of a stride-1 3x3 conv is itself a Winograd conv (flipped kernel)
    dy = rng.standard_normal(conv.conv2d_forward(x, w, None, padding=padding).shape).astype(np.float32)
    assert winograd.applicable(dy.shape, (3, 3, f, x_shape[3]), (1, 1), (1, 1), x_shape[1:3])
    dx_ref, dw_ref, db_ref = ref_backward(x, w, dy, (1, 1), padding, (1, 1))
    close(conv.conv2d_backward_input(dy, w, x.shape, padding=padding), dx_ref, rtol=2e-5)
    # the weight gradient is the Winograd forward's adjoint (chunks accumulate into one dU)
    dw, db = conv.conv2d_backward_weights(x, dy, w.shape, padding=padding)
    close(dw, dw_ref, rtol=2e-5)
    close(db, db_ref)


def test_winograd_weight_gradient_is_used_when_applicable(rng, monkeypatch):
    calls = []
    real = winograd_backward.conv3x3_backward_weights
    monkeypatch.setattr(winograd_backward, "conv3x3_backward_weights", lambda *a: calls.append(a) or real(*a))
    x = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
    conv.conv2d_backward_weights(x, rng.standard_normal((2, 8, 8, 16)).astype(np.float32), (3, 3, 16, 16), padding="same")
    assert len(calls) == 1
    conv.conv2d_backward_weights(x, rng.standard_normal((2, 4, 4, 16)).astype(np.float32), (3, 3, 16, 16), 2, "same")
    assert len(calls) == 1  # strided: im2col route


def test_winograd_weight_gradient_at_vgg_scale(rng):
    """block5-sized layer, batch 2: relative error well below 1e-4 against the im2col product."""
    x = np.maximum(rng.standard_normal((2, 14, 14, 64)), 0).astype(np.float32)
    dy = rng.standard_normal((2, 14, 14, 48)).astype(np.float32)
    wino = winograd_backward.conv3x3_backward_weights(x, dy, 1, 1)
    _, want, _ = ref_backward(x, np.zeros((3, 3, 64, 48), np.float32), dy, (1, 1), "same", (1, 1))
    assert np.abs(wino - want).max() <= 1e-5 * np.abs(want).max()


def test_filter_transform_adjoint_is_gt_du_g(rng):
    du = rng.standard_normal((36, 5, 7)).astype(np.float32)
    dw = np.empty((3, 3, 5, 7), np.float32)
    winograd.filter_transform_adjoint(du, dw)
    want = np.einsum("ai,abcf,bj->ijcf", winograd.G, du.reshape(6, 6, 5, 7).astype(np.float64), winograd.G)
    np.testing.assert_allclose(dw, want, rtol=1e-5, atol=1e-5)


def test_winograd_is_used_when_applicable(rng, monkeypatch):
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a: calls.append(a) or real(*a))
    x = rng.standard_normal((1, 12, 12, 16)).astype(np.float32)  # 9 tiles: fewer go to im2col (few_tiles)
    conv.conv2d_forward(x, rng.standard_normal((3, 3, 16, 16)).astype(np.float32), padding="same")
    assert len(calls) == 1
    conv.conv2d_forward(x, rng.standard_normal((3, 3, 16, 16)).astype(np.float32), strides=2, padding="same")
    conv.conv2d_forward(x[..., :3], rng.standard_normal((3, 3, 3, 16)).astype(np.float32), padding="same")
    assert len(calls) == 1  # stride 2 and 3 input channels go the direct way


def test_filter_transform_is_g_w_gt(rng):
    w = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)
    want = np.einsum("ai,ijcf,bj->abcf", winograd.G, w.astype(np.float64), winograd.G).reshape(36, 5, 7)
    np.testing.assert_allclose(conv.winograd_transform_filter(w), want, rtol=1e-6, atol=1e-6)


def test_winograd_applicability_rules():
    assert winograd.applicable((8, 56, 56, 64), (3, 3, 64, 64), (1, 1), (1, 1))
    assert not winograd.applicable((8, 56, 56, 64), (3, 3, 64, 64), (2, 2), (1, 1))
    assert not winograd.applicable((8, 56, 56, 64), (3, 3, 64, 64), (1, 1), (2, 2))
    assert not winograd.applicable((8, 56, 56, 64), (5, 5, 64, 64), (1, 1), (1, 1))
    assert not winograd.applicable((8, 224, 224, 3), (3, 3, 3, 64), (1, 1), (1, 1))


@pytest.mark.parametrize("x_shape, f, padding", [((3, 7, 7, 17), 19, "same"), ((2, 6, 7, 16), 21, "same")])
def test_winograd_forward_of_small_outputs(x_shape, f, padding, rng, monkeypatch):
    """6x6 and 7x7 outputs of wide layers (ResNet50's conv5) take the Winograd forward, partial tiles
    cropped; the gradients of such layers keep the im2col route."""
    monkeypatch.setattr(winograd, "SMALL_OUT_CHANNELS", 16)  # small channel counts keep the reference quick
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a: calls.append(a) or real(*a))
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((3, 3, x_shape[3], f)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    close(conv.conv2d_forward(x, w, b, padding=padding, relu=True), ref_forward(x, w, b, (1, 1), padding, (1, 1), True),
          rtol=2e-5)
    assert len(calls) == 1
    dy = rng.standard_normal(conv.conv2d_forward(x, w, None, padding=padding).shape).astype(np.float32)
    dx_ref, dw_ref, _ = ref_backward(x, w, dy, (1, 1), padding, (1, 1))
    close(conv.conv2d_backward_input(dy, w, x.shape, padding=padding), dx_ref, rtol=2e-5)
    close(conv.conv2d_backward_weights(x, dy, w.shape, padding=padding)[0], dw_ref, rtol=2e-5)
    assert len(calls) == 2  # the forward just above; not the gradients


def test_winograd_small_output_rules():
    assert winograd.applicable((32, 7, 7, 512), (3, 3, 512, 512), (1, 1), (1, 1))
    assert winograd.applicable((1, 6, 6, 128), (3, 3, 128, 256), (1, 1), (1, 1))
    assert not winograd.applicable((32, 7, 7, 512), (3, 3, 512, 512), (1, 1), (1, 1), (7, 7), small_outputs=False)
    assert not winograd.applicable((1, 7, 7, 16), (3, 3, 16, 64), (1, 1), (1, 1))  # narrow: im2col
    assert not winograd.applicable((32, 5, 5, 256), (3, 3, 256, 256), (1, 1), (1, 1))


def test_winograd_matches_direct_at_vgg_scale(rng):
    """block2-sized layer with He-scaled weights: relative error well below 1e-4."""
    x = np.maximum(rng.standard_normal((1, 56, 56, 64)), 0).astype(np.float32)
    w = (rng.standard_normal((3, 3, 64, 64)) * np.sqrt(2 / (9 * 64))).astype(np.float32)
    b = (rng.standard_normal(64) * 0.1).astype(np.float32)
    direct = conv._direct(x, w.reshape(-1, 64), b, (3, 3, 1, 1, 1, 1), 1, 1, (56, 56), False)
    wino = winograd.conv3x3(x, w, None, b, 1, 1, (56, 56), False)
    assert np.abs(wino - direct).max() <= 1e-4 * np.abs(direct).max()


def test_winograd_filter_of_wrong_shape_is_rejected(rng):
    x = rng.standard_normal((1, 12, 12, 16)).astype(np.float32)  # enough tiles for Winograd (few_tiles)
    w = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="winograd_transform_filter"):
        conv.conv2d_forward(x, w, padding="same", wino_filter=np.zeros((36, 8, 16), np.float32))
    with pytest.raises(ValueError, match=r"\(3, 3, in_channels, filters\)"):
        conv.winograd_transform_filter(np.zeros((5, 5, 16, 16), np.float32))


# ---------------------------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize("call, message", [
    (lambda: conv.conv2d_forward(np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 4, 2))), "expects 4 input channels"),
    (lambda: conv.conv2d_forward(np.zeros((5, 5, 3)), np.zeros((3, 3, 3, 2))), "must be 4-D"),
    (lambda: conv.conv2d_forward(np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 3, 2)), padding="full"), "'valid' or 'same'"),
    (lambda: conv.conv2d_forward(np.zeros((1, 2, 2, 3)), np.zeros((3, 3, 3, 2))), "does not fit"),
    (lambda: conv.conv2d_forward(np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 3, 2)), np.zeros(3)), "one per filter"),
    (lambda: conv.conv2d_backward_input(np.zeros((1, 4, 4, 2)), np.zeros((3, 3, 3, 2)), (1, 5, 5, 3)),
     "this convolution's output is"),
    (lambda: conv.conv2d_backward_weights(np.zeros((1, 5, 5, 3)), np.zeros((1, 3, 3, 2)), (3, 3, 4, 2)),
     "kernel_shape must be"),
])
def test_bad_input_is_explained(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# torch as an independent oracle (symmetric-padding cases, since torch pads symmetrically)

@pytest.mark.parametrize("x_shape, k, f, s, padding, torch_pad", [
    ((2, 9, 11, 16), 3, 16, 1, "same", 1),    # Winograd route; same == symmetric pad 1
    ((2, 9, 11, 5), 3, 4, 2, "valid", 0),     # strided direct route
])
def test_matches_torch(x_shape, k, f, s, padding, torch_pad, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((k, k, x_shape[3], f)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tw = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, torch.tensor(b), stride=s, padding=torch_pad)
    dy = rng.standard_normal(ty.shape).astype(np.float32)
    ty.backward(torch.tensor(dy))
    dy = dy.transpose(0, 2, 3, 1)
    close(conv.conv2d_forward(x, w, b, (s, s), padding), ty.detach().numpy().transpose(0, 2, 3, 1))
    close(conv.conv2d_backward_input(dy, w, x.shape, (s, s), padding), tx.grad.numpy().transpose(0, 2, 3, 1))
    close(conv.conv2d_backward_weights(x, dy, w.shape, (s, s), padding)[0], tw.grad.numpy().transpose(2, 3, 1, 0))


@pytest.mark.parametrize("chunked", [False, True, None], ids=["tiles", "chunks", "small_on_calling_thread"])
@pytest.mark.parametrize("shape, strides", [((1, 1, 40, 24), (1, 1)), ((3, 3, 8, 12), (2, 2)),
                                            ((3, 3, 8, 12), (1, 1))], ids=["1x1", "3x3s2", "3x3s1"])
def test_forward_into_a_channel_slice_on_every_route(rng, monkeypatch, chunked, shape, strides):
    """bias + ReLU land in the slice only, every tile once, whichever thread ran it."""
    monkeypatch.setattr(conv_chunks, "CHUNKED", chunked)
    # None: small 1x1 convs run whole on the calling thread; otherwise they take the forced route.
    monkeypatch.setattr(conv, "POINTWISE_SPLIT_FLOPS", 10**12 if chunked is None else 0)
    monkeypatch.setattr(conv_chunks, "CHUNK_BYTES", 20_000)  # many chunks: more than the threads
    monkeypatch.setattr(threads, "num_threads", lambda: 3)
    x = rng.standard_normal((3, 17, 15, shape[2])).astype(np.float32)
    w = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape[3]).astype(np.float32)
    want = ref_forward(x, w, b, strides, "same", (1, 1), relu=True)
    buf = np.full(want.shape[:3] + (shape[3] + 10,), 7.0, np.float32)
    got = conv.conv2d_forward(x, w, b, strides, "same", relu=True, out=buf[..., 4:4 + shape[3]])
    close(got, want)
    close(buf[..., 4:4 + shape[3]], want)
    assert (buf[..., :4] == 7.0).all() and (buf[..., 4 + shape[3]:] == 7.0).all(), "wrote outside its slice"


@pytest.mark.parametrize("threaded", [False, True, "filter_groups"], ids=["shared_chunks", "thread_chunks", "groups"])
def test_winograd_routes_into_a_slice_and_pooled(rng, monkeypatch, threaded):
    """Every Winograd route, forced: 'same' conv + bias + ReLU into a channel slice (partial
    tiles at the edges, chunks spanning images), and the fused 2x2 pool. groups: shared chunks with
    a filter too large to keep, transformed 3 rows of G at a time (winograd_filters)."""
    if threaded == "filter_groups":
        from tlkit.engine.kernels import winograd_filters
        monkeypatch.setattr(winograd_filters, "FILTER_BLOCK_BYTES", 36 * 16 * 16 * 4)
        assert winograd_filters.rows_per_group(16, 20) == 3 and not winograd_filters.cached_filter_wanted(16, 20)
        threaded = False
    monkeypatch.setattr(winograd, "THREADED", threaded)
    monkeypatch.setattr(winograd, "THREAD_BYTES", 30_000)  # several tile rows, several chunks per thread
    monkeypatch.setattr(threads, "num_threads", lambda: 3)
    x = rng.standard_normal((3, 13, 11, 16)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 16, 20)) * 0.2).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    want = ref_forward(x, w, b, (1, 1), "same", (1, 1), relu=True)
    buf = np.full((3, 13, 11, 27), 7.0, np.float32)
    winograd.conv3x3(x, w, None, b, 1, 1, (13, 11), True, buf, 5)
    close(buf[..., 5:25], want, rtol=1e-4)
    assert (buf[..., :5] == 7.0).all() and (buf[..., 25:] == 7.0).all(), "wrote outside its slice"
    pooled = winograd.conv3x3(x, w, None, b, 1, 1, (13, 11), True, pool2=True)
    close(pooled, want[:, :12, :10].reshape(3, 6, 2, 5, 2, 20).max(axis=(2, 4)), rtol=1e-4)
