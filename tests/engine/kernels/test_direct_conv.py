"""Direct small-window convolution and the fused conv + max pooling, against plain numpy loops."""
import numpy as np
import pytest

from tlkit.engine.kernels import conv, conv_chunks, conv_pool_bands, direct_conv, pool, winograd
from tlkit.utils import threads


def tf_pads(size, k, s, padding):
    """(out, before, after) along one axis, TF rules (odd padding pixel after)."""
    if padding == "valid":
        return (size - k) // s + 1, 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def ref_conv(x, w, b, s, padding, relu):
    """float64 loop over output pixels: each one a dot product of its zero-padded window."""
    kh, kw, _, f = w.shape
    oh, top, bottom = tf_pads(x.shape[1], kh, s[0], padding)
    ow, left, right = tf_pads(x.shape[2], kw, s[1], padding)
    xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    y = np.zeros((x.shape[0], oh, ow, f))
    for r in range(oh):
        for c in range(ow):
            window = xp[:, r * s[0]:r * s[0] + kh, c * s[1]:c * s[1] + kw]
            y[:, r, c] = np.einsum("nijc,ijcf->nf", window, w.astype(np.float64))
    if b is not None:
        y += b
    return np.maximum(y, 0) if relu else y


def ref_max_pool(y, size, strides, padding):
    """Padded cells are -inf, so they never win (TF)."""
    oh, top, bottom = tf_pads(y.shape[1], size[0], strides[0], padding)
    ow, left, right = tf_pads(y.shape[2], size[1], strides[1], padding)
    yp = np.pad(y, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    out = np.empty((y.shape[0], oh, ow, y.shape[3]))
    for r in range(oh):
        for c in range(ow):
            out[:, r, c] = yp[:, r * strides[0]:r * strides[0] + size[0],
                              c * strides[1]:c * strides[1] + size[1]].max(axis=(1, 2))
    return out


def close(got, want):
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(np.abs(want).max(), 1.0))


def make(rng, x_shape, k, f):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((k[0], k[1], x_shape[3], f)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    return x, w, b


@pytest.fixture
def forced(monkeypatch):
    """Every dilation-1 conv takes the direct route (these small shapes test the kernels, not the
    speed crossover)."""
    for name in ("MAX_K", "MAX_K_STRIDED", "MAX_K_POOLED", "MAX_FILTERS"):
        monkeypatch.setattr(direct_conv, name, 1 << 30)
    monkeypatch.setattr(conv_pool_bands, "MIN_FILTERS", 1 << 30)  # not the BLAS band route (its own tests)


class _Calls(list):
    """Kernel names, one per conv; ``ranges``: (name, job0, job1) of every call."""

    def __init__(self):
        super().__init__()
        self.ranges = []


@pytest.fixture
def direct_calls(monkeypatch):
    """Counts calls of the direct kernels, so a test can prove which route ran: one per conv, the
    call of its first job range (job0 == 0; the other ranges go to other threads)."""
    calls = _Calls()
    for name, job0_from_end in (("conv_bias_relu", 4), ("conv_bias_relu_maxpool", 3)):
        real = getattr(direct_conv, name)

        def counted(*a, _real=real, _name=name, _at=job0_from_end):
            if a[-_at] == 0:
                calls.append(_name)
            calls.ranges.append((_name, a[-_at], a[-_at + 1]))
            return _real(*a)

        monkeypatch.setattr(direct_conv, name, counted)
    return calls


# (x shape, (kh, kw), filters, strides, padding)
CONV_CASES = [
    ((1, 9, 11, 3), (3, 3), 64, (2, 2), "valid"),   # SqueezeNet conv1 in miniature
    ((3, 8, 7, 3), (3, 3), 20, (1, 1), "same"),     # VGG block1_conv1 in miniature
    ((3, 7, 9, 1), (3, 3), 5, (2, 2), "same"),
    ((1, 10, 9, 4), (2, 3), 17, (1, 2), "same"),
    ((1, 13, 12, 4), (3, 3), 33, (3, 1), "valid"),
    ((3, 6, 5, 3), (2, 1), 7, (1, 1), "valid"),     # 1x1 windows go to BLAS (direct_conv.applicable)
    ((1, 5, 5, 1), (5, 5), 3, (1, 1), "same"),      # the window is wider than the padding on both sides
]


@pytest.mark.parametrize("x_shape, k, f, s, padding", CONV_CASES)
def test_direct_route_matches_reference(x_shape, k, f, s, padding, rng, forced, direct_calls):
    x, w, b = make(rng, x_shape, k, f)
    for bias, relu in ((None, False), (b, True), (b, False)):
        close(conv.conv2d_forward(x, w, bias, s, padding, relu=relu), ref_conv(x, w, bias, s, padding, relu))
    assert direct_calls == ["conv_bias_relu"] * 3


def test_direct_route_writes_into_a_channel_slice_and_nothing_else(rng, forced, direct_calls):
    x, w, b = make(rng, (3, 9, 8, 3), (3, 3), 21)
    buf = np.full((3, 9, 8, 40), 7.0, np.float32)
    got = conv.conv2d_forward(x, w, b, padding="same", relu=True, out=buf[..., 5:26])
    assert direct_calls == ["conv_bias_relu"]
    assert np.shares_memory(got, buf)
    close(buf[..., 5:26], ref_conv(x, w, b, (1, 1), "same", True))
    assert (buf[..., :5] == 7).all() and (buf[..., 26:] == 7).all()


# (x shape, (kh, kw), filters, strides, padding, pool size, pool strides, pool padding)
POOL_CASES = [
    ((3, 17, 19, 3), (3, 3), 64, (2, 2), "valid", (3, 3), (2, 2), "valid"),  # SqueezeNet conv1 + pool1
    ((1, 12, 10, 3), (3, 3), 20, (1, 1), "same", (2, 2), None, "valid"),      # VGG-style, default strides
    ((3, 11, 9, 1), (3, 3), 5, (1, 1), "same", (3, 3), (2, 2), "same"),
    ((1, 13, 14, 4), (2, 2), 17, (2, 1), "valid", (2, 3), (1, 2), "same"),
    ((1, 9, 9, 4), (3, 3), 6, (1, 1), "valid", (2, 2), (3, 3), "valid"),      # pool strides > pool size
    ((3, 16, 7, 3), (3, 3), 3, (1, 1), "same", (3, 1), (1, 1), "same"),       # overlapping rows, 1 column
]


@pytest.mark.parametrize("x_shape, k, f, s, padding, ps, pst, ppad", POOL_CASES)
def test_fused_conv_maxpool_matches_reference(x_shape, k, f, s, padding, ps, pst, ppad, rng, forced,
                                              direct_calls):
    x, w, b = make(rng, x_shape, k, f)
    for bias, relu in ((None, False), (b, True)):
        got = conv.conv2d_maxpool_forward(x, w, bias, s, padding, relu, ps, pst, ppad)
        want = ref_max_pool(ref_conv(x, w, bias, s, padding, relu), ps, pst or ps, ppad)
        close(got, want)
        unfused = pool.max_pool2d_forward(conv.conv2d_forward(x, w, bias, s, padding, relu=relu), ps, pst or ps,
                                          ppad, with_argmax=False)[0]
        np.testing.assert_allclose(got, unfused, rtol=0, atol=1e-5 * max(np.abs(unfused).max(), 1.0))
    assert direct_calls.count("conv_bias_relu_maxpool") == 2


@pytest.mark.parametrize("x_shape, padding", [((2, 14, 13, 16), "same"), ((1, 11, 12, 16), "valid")])
def test_winograd_convs_fuse_with_a_2x2_stride_2_pool(x_shape, padding, rng, monkeypatch):
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: calls.append(k) or real(*a, **k))
    x, w, b = make(rng, x_shape, (3, 3), 24)
    assert conv.fuses_max_pool((None,) + x_shape[1:], w.shape, 1, 1, 2, None, "valid")
    got = conv.conv2d_maxpool_forward(x, w, b, 1, padding, True, pool_size=2)
    assert calls == [dict(pool2=True)]
    close(got, ref_max_pool(ref_conv(x, w, b, (1, 1), padding, True), (2, 2), (2, 2), "valid"))
    u = conv.winograd_transform_filter(w)
    np.testing.assert_array_equal(conv.conv2d_maxpool_forward(x, w, b, 1, padding, True, wino_filter=u), got)


def test_fuses_max_pool_says_which_pairs_run_in_one_pass():
    assert conv.fuses_max_pool((None, 224, 224, 3), (3, 3, 3, 64), 2, 1, 3, 2, "valid")  # SqueezeNet
    assert conv.fuses_max_pool((None, 12, 12, 3), (3, 3, 3, 8), 1, 1, (2, 2), None, "same")
    assert not conv.fuses_max_pool((None, 12, 12, 3), (3, 3, 3, 8), 1, 2, 2)  # dilated
    assert not conv.fuses_max_pool((None, 12, 12, 16), (3, 3, 16, 8), 1, 1, 3, 2)  # Winograd, 3x3 pool
    assert not conv.fuses_max_pool((None, 12, 12, 16), (3, 3, 16, 8), 2, 1, 2, 2)  # stride 2: im2col
    assert not conv.fuses_max_pool((None, 12, 12, 16), (3, 3, 16, 8), 1, 1, 2, 2, "same")


def test_fused_result_does_not_depend_on_how_rows_are_split(rng):
    """Jobs of a few pooled rows each recompute the conv rows their ring has not seen yet."""
    x, w, b = make(rng, (2, 23, 9, 3), (3, 3), 8)
    wk = w.reshape(-1, 8)
    results = []
    for parts in (1, 2, 3, 10):  # 10 pooled rows per image
        y = np.empty((2, 10, 3, 8), np.float32)
        # the 2 * parts jobs in two calls, as two threads would take them
        half = parts  # image 0's jobs, then image 1's (the second call starts on a fresh ring)
        for j0, j1 in ((0, half - 1), (half - 1, 2 * parts)) if parts > 1 else ((0, 1), (1, 2)):
            direct_conv.conv_bias_relu_maxpool(x, wk, b, True, 3, 3, 1, 1, 0, 0, (21, 7), 3, 3, 2, 2, 0, 0, parts,
                                               j0, j1, y)
        results.append(y)
    want = ref_max_pool(ref_conv(x, w, b, (1, 1), "valid", True), (3, 3), (2, 2), "valid")
    for y in results:
        close(y, want)


def test_fused_writes_into_out(rng, direct_calls):
    x, w, b = make(rng, (1, 9, 9, 3), (3, 3), 16)
    out = np.zeros((1, 3, 3, 16), np.float32)
    got = conv.conv2d_maxpool_forward(x, w, b, relu=True, pool_size=2, pool_strides=2, out=out)
    assert got is out and direct_calls == ["conv_bias_relu_maxpool"]
    close(out, ref_max_pool(ref_conv(x, w, b, (1, 1), "valid", True), (2, 2), (2, 2), "valid"))


def test_large_windows_and_dilation_fall_back_to_the_unfused_composition(rng, direct_calls):
    x, w, b = make(rng, (1, 10, 10, 6), (3, 3), 4)  # K = 54: im2col + BLAS route
    got = conv.conv2d_maxpool_forward(x, w, b, padding="same", relu=True, pool_size=3, pool_strides=2,
                                      pool_padding="same")
    close(got, ref_max_pool(ref_conv(x, w, b, (1, 1), "same", True), (3, 3), (2, 2), "same"))
    assert direct_calls == []
    x3, w3, _ = make(rng, (1, 9, 9, 3), (3, 3), 4)
    conv.conv2d_forward(x3, w3, dilation=2)
    assert direct_calls == []


def test_applicability_rules():
    assert direct_conv.applicable((3, 3, 3, 64), (1, 1))                 # SqueezeNet conv1, VGG16 block1_conv1
    assert not direct_conv.applicable((3, 3, 3, 64), (2, 2))
    assert not direct_conv.applicable((3, 3, 4, 64), (1, 1))             # alone, BLAS wins from K = 36 ...
    assert direct_conv.applicable((3, 3, 4, 64), (1, 1), pooled=True)    # ... fused with a pool, not yet
    assert not direct_conv.applicable((3, 3, 64, 64), (1, 1), pooled=True)
    assert not direct_conv.applicable((1, 1, 3, 4096), (1, 1), pooled=True)
    assert not direct_conv.applicable((1, 1, 16, 64), (1, 1))             # 1x1: BLAS on the input as it is
    assert not direct_conv.applicable((3, 3, 3, 32), (1, 1), strides=(2, 2))  # 3x3/2 RGB stems: BLAS
    assert direct_conv.applicable((3, 3, 1, 32), (1, 1), strides=(2, 2))
    assert direct_conv.applicable((3, 3, 3, 64), (1, 1), pooled=True, strides=(2, 2))  # SqueezeNet conv1 + pool1


def test_routes(rng, direct_calls):
    x3, w3, _ = make(rng, (1, 8, 8, 3), (3, 3), 8)
    x4, w4, _ = make(rng, (1, 8, 8, 4), (3, 3), 8)
    conv.conv2d_forward(x3, w3)
    conv.conv2d_forward(x4, w4)
    conv.conv2d_maxpool_forward(x4, w4)
    conv.conv2d_forward(x3, w3, strides=2)  # an RGB stem: im2col + BLAS
    assert direct_calls == ["conv_bias_relu", "conv_bias_relu_maxpool"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(pool_size=0), "pool_size must be a positive int"),
    (dict(pool_size=(2, 2, 2)), "pool_size must be a positive int"),
    (dict(pool_strides=(2, -1)), "pool_strides must be a positive int"),
    (dict(pool_padding="full"), "pool_padding must be 'valid' or 'same'"),
    (dict(pool_size=9), r"pool_size \(9, 9\) does not fit in the convolution's 7x7 output"),
    (dict(padding="full"), "padding must be 'valid' or 'same'"),
    (dict(strides=0), "strides must be a positive int"),
    (dict(b=np.zeros(3)), "one per filter"),
    (dict(out=np.zeros((1, 3, 3, 4))), "out must be a C-contiguous float32 array of shape \\(1, 3, 3, 4\\)"),
    (dict(out=np.zeros((1, 3, 3, 8), np.float32)[..., ::2]), "out must be a C-contiguous"),
    (dict(w=np.zeros((3, 3, 2, 4))), "expects 2 input channels"),
])
def test_bad_arguments_are_explained(kwargs, message):
    args = dict(x=np.zeros((1, 9, 9, 3), np.float32), w=np.zeros((3, 3, 3, 4), np.float32))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        conv.conv2d_maxpool_forward(**args)


@pytest.mark.parametrize("chunked", [False, True], ids=["one_call", "job_chunks"])
def test_direct_routes_by_job_chunks_match_reference(rng, forced, direct_calls, monkeypatch, chunked):
    """Both ways of running the direct kernels, forced: every job in one call, or job ranges shared
    by three threads; each image written once, into a channel slice for the plain conv."""
    monkeypatch.setattr(conv_chunks, "CHUNKED", chunked)
    monkeypatch.setattr(threads, "num_threads", lambda: 3)
    x, w, b = make(rng, (5, 17, 19, 3), (3, 3), 24)
    buf = np.full((5, 8, 9, 30), 7.0, np.float32)
    conv.conv2d_forward(x, w, b, (2, 2), "valid", relu=True, out=buf[..., 2:26])
    close(buf[..., 2:26], ref_conv(x, w, b, (2, 2), "valid", True))
    assert (buf[..., :2] == 7.0).all() and (buf[..., 26:] == 7.0).all(), "wrote outside its slice"
    got = conv.conv2d_maxpool_forward(x, w, b, 2, "valid", True, 3, 2)
    close(got, ref_max_pool(ref_conv(x, w, b, (2, 2), "valid", True), (3, 3), (2, 2), "valid"))
    assert direct_calls == ["conv_bias_relu", "conv_bias_relu_maxpool"]
    for name, jobs in (("conv_bias_relu", 5 * 8), ("conv_bias_relu_maxpool", 5 * 3)):  # rows; images x 3 parts
        ranges = sorted((j0, j1) for kernel, j0, j1 in direct_calls.ranges if kernel == name)
        assert [j0 for j0, _ in ranges] == [0] + [j1 for _, j1 in ranges[:-1]] and ranges[-1][1] == jobs, ranges
        assert (len(ranges) > 2) if chunked else (len(ranges) == 1), ranges
