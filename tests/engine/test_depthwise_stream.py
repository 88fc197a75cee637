"""Large depthwise outputs streamed out with non-temporal stores (kernels/depthwise_stream.py, used by
kernels/depthwise_rows.py) against the float64 numpy reference: every place of the output's first
float in its cache line (whole lines by streaming stores, partial lines at each block's ends by plain
ones), 4- and 7-pixel blocks with the last one overlapping, batch 1 (bands of rows), channel counts
that are not a multiple of a line, and one MobileNet-sized layer that streams by size where the CPU
runs AVX-512 at half width (Zen 4) and is written with plain stores at full width (Intel Xeon)."""
import numpy as np
import pytest

from tlkit.engine.kernels import depthwise, depthwise_rows, depthwise_stream

from test_depthwise_rows import reference64


@pytest.fixture
def streamed(monkeypatch):
    """Streams every output through the ring kernels, whatever its size; records each decision."""
    decisions = []

    def always(y):
        decisions.append(True)
        return True
    monkeypatch.setattr(depthwise_rows, "streams", always)
    return decisions


def out_at_phase(shape, phase):
    """A C-contiguous float32 array of ``shape`` whose first float is float ``phase`` of a cache line."""
    size = int(np.prod(shape))
    buffer = np.empty(size + 2 * depthwise_stream.LINE_FLOATS, np.float32)
    skip = (-(buffer.ctypes.data // 4) + phase) % depthwise_stream.LINE_FLOATS
    out = buffer[skip:skip + size].reshape(shape)
    assert out.ctypes.data // 4 % depthwise_stream.LINE_FLOATS == phase
    return out


@pytest.mark.parametrize("phase", [0, 1, 4, 15])
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("shape", [(3, 6, 14, 72), (1, 9, 13, 67), (2, 5, 10, 144), (2, 4, 6, 65)])
def test_streamed_outputs_match_float64_reference(rng, streamed, phase, k, shape):
    """Rows of 14 and 13 pixels (7-pixel blocks, the second overlapping at 13), 10 and 6 (4-pixel
    blocks), with bias and clip; the output placed at 4 different offsets in a cache line."""
    x = (2 * rng.standard_normal(shape)).astype(np.float32)
    kernel = rng.standard_normal((k, k, shape[-1], 1)).astype(np.float32)
    bias = rng.standard_normal(shape[-1]).astype(np.float32)
    out = out_at_phase(shape, phase)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), "same", bias=bias, clip=(-3.0, 4.0), out=out)
    assert y is out and streamed == [True]
    np.testing.assert_allclose(y, reference64(x, kernel, "same", bias=bias, clip=(-3.0, 4.0)), rtol=1e-5, atol=1e-5)


def test_streamed_with_row_dilation_and_valid_padding(rng, streamed):
    x = rng.standard_normal((2, 11, 16, 80)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 80, 1)).astype(np.float32)
    for padding, dilation in [("valid", (1, 1)), ("same", (2, 1))]:
        y = depthwise.depthwise_forward(x, kernel, (1, 1), padding, dilation)
        np.testing.assert_allclose(y, reference64(x, kernel, padding, dilation), rtol=1e-5, atol=1e-5)
    assert streamed == [True, True]


@pytest.fixture(params=[False, True], ids=["half width", "full width"])
def full_width(request, monkeypatch):
    """Runs a test as on a CPU with AVX-512 at half width (Zen 4) and at full width (Intel Xeon)."""
    monkeypatch.setattr(depthwise_stream, "full_width", lambda: request.param)
    return request.param


def test_only_large_aligned_outputs_stream(monkeypatch):
    """From STREAM_MIN_BYTES on, unless the floats are not 4-byte aligned (an out= array viewed from
    bytes at an odd offset): their lines cannot be streamed."""
    monkeypatch.setattr(depthwise_stream, "full_width", lambda: False)
    size = depthwise_stream.STREAM_MIN_BYTES // 4
    assert depthwise_stream.streams(np.empty(size, np.float32))
    assert not depthwise_stream.streams(np.empty(size - 1, np.float32))
    raw = np.empty(4 * size + 4, np.uint8)
    offset = 1 if (raw.ctypes.data + 1) % 4 else 2
    misaligned = np.frombuffer(raw, np.float32, count=size, offset=offset)
    assert misaligned.ctypes.data % 4 != 0 and not depthwise_stream.streams(misaligned)


def test_full_width_cpus_never_stream(monkeypatch):
    monkeypatch.setattr(depthwise_stream, "full_width", lambda: True)
    assert not depthwise_stream.streams(np.empty(4 * depthwise_stream.STREAM_MIN_BYTES, np.float32))


def test_mobilenet_layer_streams_by_size_at_half_width(rng, full_width):
    """MobileNetV2's 14 x 14 x 576 depthwise layer at batch 32 (14.5 MB out) takes the streamed way with
    no help at half width, plain stores at full width; both match."""
    x = rng.standard_normal((32, 14, 14, 576)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 576, 1)).astype(np.float32)
    y = depthwise.depthwise_forward(x, kernel, (1, 1), "same", clip=(0.0, 6.0))
    assert depthwise_stream.streams(y) is not full_width
    np.testing.assert_allclose(y, reference64(x, kernel, "same", clip=(0.0, 6.0)), rtol=1e-5, atol=1e-5)
