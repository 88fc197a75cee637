import json
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlkit.zoo.weights import WeightFileError, read_safetensors, read_weight_file, write_safetensors


def raw_file(path, header, data=b"", header_size=None):
    """A safetensors file from a header (dict or raw bytes) and data, with no checks at all."""
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(header_bytes) if header_size is None else header_size
    path.write_bytes(struct.pack("<Q", size) + header_bytes + data)
    return path


def sample_tensors(rng):
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "half": rng.standard_normal((5,)).astype(np.float16),
        "double": rng.standard_normal((2, 2)),
        "steps": np.array(7, dtype=np.int64),
        "ints": np.arange(-3, 3, dtype=np.int32),
        "bytes": np.arange(5, dtype=np.uint8),
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 3), np.float32),
    }


def test_roundtrip_keeps_names_order_values_and_metadata(tmp_path, rng):
    tensors = sample_tensors(rng)
    path = write_safetensors(tmp_path / "w.safetensors", tensors, metadata={"format": "pt", "source": "test"})
    wf = read_safetensors(path, float32=False)
    assert wf.format == "safetensors"
    assert list(wf.tensors) == list(tensors)
    for name, array in tensors.items():
        assert wf.tensors[name].dtype == array.dtype
        assert wf.tensors[name].shape == array.shape
        np.testing.assert_array_equal(wf.tensors[name], array)
    assert wf.attrs == {"format": "pt", "source": "test"}


def test_float32_conversion_by_default(tmp_path, rng):
    tensors = sample_tensors(rng)
    wf = read_safetensors(write_safetensors(tmp_path / "w.safetensors", tensors))
    for name in ("conv.weight", "half", "double"):
        assert wf.tensors[name].dtype == np.float32
        np.testing.assert_array_equal(wf.tensors[name], tensors[name].astype(np.float32))
    assert wf.tensors["steps"].dtype == np.int64 and wf.tensors["steps"].shape == ()


def test_bfloat16_is_widened_to_float32(tmp_path):
    values = np.array([1.5, -2.0, 3.140625, 0.0], np.float32)  # exactly representable in bfloat16
    bits = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = {"b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}
    wf = read_safetensors(raw_file(tmp_path / "bf.safetensors", header, bits))
    np.testing.assert_array_equal(wf.tensors["b"], values.reshape(2, 2))


def test_big_endian_input_is_written_little_endian(tmp_path):
    array = np.arange(6, dtype=">f4").reshape(2, 3)
    path = write_safetensors(tmp_path / "w.safetensors", {"x": array})
    assert open(path, "rb").read().endswith(np.arange(6, dtype="<f4").tobytes())
    np.testing.assert_array_equal(read_safetensors(path).tensors["x"], array)


def test_header_is_padded_to_8_bytes(tmp_path):
    path = write_safetensors(tmp_path / "w.safetensors", {"abc": np.ones(3, np.float32)})
    (size,) = struct.unpack("<Q", open(path, "rb").read(8))
    assert size % 8 == 0


def test_front_door_sniffs_safetensors_regardless_of_extension(tmp_path):
    path = write_safetensors(tmp_path / "weights.bin", {"w": np.ones(2, np.float32)})
    assert read_weight_file(path).format == "safetensors"


def test_a_header_length_starting_with_a_pickles_first_byte_is_still_safetensors(tmp_path):
    for pad in range(16):  # the metadata's length moves the header length through 0x80 (mod 256)
        path = write_safetensors(tmp_path / "w.safetensors", {"w": np.ones(2, np.float32)}, {"k": "x" * pad * 8})
        if open(path, "rb").read(1) == b"\x80":
            break
    assert open(path, "rb").read(1) == b"\x80"
    assert read_weight_file(path).format == "safetensors"


def test_reads_files_of_the_reference_implementation(tmp_path, rng):
    numpy_io = pytest.importorskip("safetensors.numpy")
    tensors = sample_tensors(rng)
    numpy_io.save_file(tensors, str(tmp_path / "ref.safetensors"), metadata={"k": "v"})
    wf = read_safetensors(tmp_path / "ref.safetensors", float32=False)
    assert set(wf.tensors) == set(tensors) and wf.attrs == {"k": "v"}
    for name, array in tensors.items():
        np.testing.assert_array_equal(wf.tensors[name], array)
        assert wf.tensors[name].dtype == array.dtype


def test_reference_implementation_reads_our_files(tmp_path, rng):
    numpy_io = pytest.importorskip("safetensors.numpy")
    tensors = sample_tensors(rng)
    write_safetensors(tmp_path / "ours.safetensors", tensors)
    loaded = numpy_io.load_file(str(tmp_path / "ours.safetensors"))
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


LIES = {
    "offsets past the data": ({"a": entry(offsets=(0, 16)), }, 8, "outside"),
    "overlapping tensors": ({"a": entry(), "b": entry(shape=(1,), offsets=(4, 8))}, 8, "overlaps|cover"),
    "gap between tensors": ({"a": entry(shape=(1,), offsets=(0, 4)), "b": entry(shape=(1,), offsets=(8, 12))}, 12, "gap"),
    "unindexed trailing data": ({"a": entry()}, 16, "cover"),
    "shape does not match span": ({"a": entry(shape=(3,))}, 8, "spans"),
    "absurd shape": ({"a": entry(shape=(2**40, 2**40))}, 8, "spans"),
    "negative dimension": ({"a": entry(shape=(-2,))}, 8, "shape"),
    "bool dimension": ({"a": entry(shape=(True, 2))}, 8, "shape"),
    "float offsets": ({"a": entry(offsets=(0.0, 8))}, 8, "data_offsets"),
    "reversed offsets": ({"a": entry(offsets=(8, 0))}, 8, "outside"),
    "unknown dtype": ({"a": entry(dtype="F8_E4M3")}, 8, "dtype"),
    "missing field": ({"a": {"dtype": "F32", "shape": [2]}}, 8, "data_offsets"),
    "extra field": ({"a": {**entry(), "x": 1}}, 8, "exactly"),
    "entry not an object": ({"a": [1, 2]}, 8, "exactly"),
    "metadata not strings": ({"a": entry(), "__metadata__": {"k": 1}}, 8, "__metadata__"),
}


@pytest.mark.parametrize("name", sorted(LIES))
def test_lying_headers_are_refused(tmp_path, name):
    header, data_size, pattern = LIES[name]
    path = raw_file(tmp_path / "lie.safetensors", header, bytes(data_size))
    with pytest.raises(WeightFileError, match=pattern) as info:
        read_safetensors(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (struct.pack("<Q", 10**12) + b"{}", "header claims"),
        (struct.pack("<Q", 2**64 - 1) + b"{}", "header claims"),
        (b"\x01\x02", "fewer than"),
        (struct.pack("<Q", 5) + b"{nope", "not valid JSON"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (struct.pack("<Q", 16) + b'{"a": 1, "a": 2}', "duplicate"),
    ],
)
def test_broken_headers_are_refused(tmp_path, content, pattern):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightFileError, match=pattern):
        read_safetensors(path)


def test_truncated_file_is_refused(tmp_path):
    path = write_safetensors(tmp_path / "w.safetensors", {"w": np.ones(100, np.float32)})
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:-10])
    with pytest.raises(WeightFileError, match="outside"):
        read_safetensors(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightFileError, match="does not exist"):
        read_safetensors(tmp_path / "nope.safetensors")


def test_writer_validates_input(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_safetensors(tmp_path / "x", {"s": np.array(["a"])})
    with pytest.raises(ValueError, match="metadata"):
        write_safetensors(tmp_path / "x", {"a": np.ones(1)}, metadata={"k": 1})
    with pytest.raises(ValueError, match="name"):
        write_safetensors(tmp_path / "x", {"__metadata__": np.ones(1)})
    assert not os.listdir(tmp_path)  # nothing half-written left behind


def _read_or_weightfileerror(path):
    try:
        read_safetensors(path)
    except WeightFileError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300))
def test_random_bytes_only_raise_weightfileerror(tmp_path, content):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(content)
    _read_or_weightfileerror(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_valid_files_only_raise_weightfileerror(tmp_path, data):
    good = tmp_path / "good.safetensors"
    if not good.exists():
        write_safetensors(good, {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float16)})
    content = bytearray(good.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(content) - 1))
        content[position] = data.draw(st.integers(0, 255))
    content = content[: data.draw(st.integers(0, len(content)))]
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(content))
    _read_or_weightfileerror(path)


@pytest.mark.parametrize("shape, pattern", [([1] * 65, "65 dimensions"), ([1] * 33, "33 dimensions"),
                                            ([0, 2**62], "too large"), ([2**62, 0, 4], "too large")])
def test_shapes_numpy_cannot_make_are_refused_clearly(tmp_path, shape, pattern):
    """Issue 14.12: these passed the size check (0 bytes) and then raised numpy's ValueError."""
    nbytes = 4 * int(np.prod(shape, dtype=object))  # the size check passes: the data is all there
    header = json.dumps({"t": {"dtype": "F32", "shape": shape, "data_offsets": [0, nbytes]}}).encode()
    path = tmp_path / "dims.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(nbytes))
    with pytest.raises(WeightFileError, match=pattern) as info:
        read_safetensors(path)
    assert len(str(info.value).splitlines()) == 1


def test_many_dims_within_the_limit_still_read(tmp_path):
    header = json.dumps({"t": {"dtype": "F32", "shape": [1] * 32, "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "dims.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + np.float32(7).tobytes())
    assert read_safetensors(path).tensors["t"].reshape(-1).tolist() == [7.0]
