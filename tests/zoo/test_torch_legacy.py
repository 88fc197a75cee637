"""PyTorch's legacy (pre-1.6, non-zip) ``torch.save`` files, read by the same unpickler as zip files.

Files are made by ``torch_files.write_legacy`` (conftest.py: the legacy layout and opcodes, no torch
needed) and, where torch is installed, by ``torch.save(..., _use_new_zipfile_serialization=False)``.
"""
import collections
import os
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from tlkit.cli import main
from tlkit.zoo.weights import WeightFileError, read_torch_state_dict, read_weight_file
from tlkit.zoo.weights import torch_legacy, torch_unpickler


@pytest.mark.parametrize("little_endian", [True, False])
def test_reads_names_in_order_and_values(tmp_path, rng, torch_files, little_endian):
    state = torch_files.sample_state_dict(rng)
    path = torch_files.write_legacy(tmp_path / "w.pth", state, little_endian=little_endian)
    assert path.read_bytes().startswith(torch_legacy.LEGACY_MAGIC)
    wf = read_weight_file(path)
    assert wf.format == "torch" and list(wf.tensors) == list(state)
    assert wf.attrs["byteorder"] == ("little" if little_endian else "big")
    for name, array in state.items():
        assert wf.tensors[name].shape == array.shape, name
        np.testing.assert_array_equal(wf.tensors[name], array.astype(np.float32) if array.dtype.kind == "f" else array)
    kept = read_torch_state_dict(path, float32=False)
    assert all(kept.tensors[n].dtype == a.dtype for n, a in state.items())


def test_views_and_shared_storages(tmp_path, torch_files):
    storage = np.arange(30, dtype=np.float32)
    view = torch_files.TensorView
    state = {"transposed": view(storage, 0, (5, 6), (1, 5)), "sliced": view(storage, 7, (2, 3), (6, 2)),
             "parameter": view(storage, 10, (3,), (1,), parameter=True),
             "other": np.arange(4, dtype=np.int64)}
    wf = read_torch_state_dict(torch_files.write_legacy(tmp_path / "w.pt", state))
    np.testing.assert_array_equal(wf.tensors["transposed"], storage.reshape(6, 5).T)
    np.testing.assert_array_equal(wf.tensors["sliced"], [[7, 9, 11], [13, 15, 17]])
    np.testing.assert_array_equal(wf.tensors["parameter"], storage[10:13])
    np.testing.assert_array_equal(wf.tensors["other"], np.arange(4))


def test_pre_1_0_storage_views_are_slices_of_their_root(tmp_path, torch_files):
    """Old files name a view of a storage in the persistent id: (view_key, offset, numel)."""
    path = torch_files.write_legacy(tmp_path / "w.pt", {"w": np.arange(10, dtype=np.float32)})
    data = path.read_bytes()
    # the sixth item of the persistent id is None (N); make it ("v", 2, 5) and point the tensor at 3 elements
    view = b"X\x01\x00\x00\x00vK\x02K\x05\x87"
    data = data.replace(b"K\nNt", b"K\n" + view + b"t", 1)
    data = data.replace(b"QK\x00K\n\x85", b"QK\x01K\x03\x85", 1)  # offset 1, size (3,) within the view
    path.write_bytes(data)
    np.testing.assert_array_equal(read_torch_state_dict(path).tensors["w"], [3, 4, 5])
    path.write_bytes(data.replace(b"K\x02K\x05\x87", b"K\x08K\x05\x87"))  # a view past its storage
    with pytest.raises(WeightFileError, match="invalid storage view"):
        read_torch_state_dict(path)


def test_same_tensors_as_torch_itself(tmp_path, rng):
    torch = pytest.importorskip("torch")
    state = collections.OrderedDict([("w", torch.from_numpy(rng.standard_normal((3, 4)).astype(np.float32))),
                                     ("t", torch.arange(12.0).reshape(3, 4).t()), ("h", torch.ones(5).half()),
                                     ("n", torch.tensor(3))])
    path = tmp_path / "torch_legacy.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes().startswith(torch_legacy.LEGACY_MAGIC)
    wf = read_torch_state_dict(path)
    assert list(wf.tensors) == list(state)
    for name, tensor in state.items():
        np.testing.assert_array_equal(wf.tensors[name], tensor.float().numpy() if tensor.is_floating_point()
                                      else tensor.numpy())


@pytest.mark.parametrize("index", range(6))
def test_hostile_pickles_are_refused_and_nothing_runs(tmp_path, torch_files, index):
    marker = tmp_path / "pwned"
    module, name, args = torch_files.hostile_payloads(marker)[index]
    evil = torch_files.Payload(torch_files.Global(module, name), *args)
    in_object = torch_files.write_legacy(tmp_path / "evil.pth", {"w": evil})
    in_header = torch_files.write_legacy(tmp_path / "evil_header.pth", {"w": np.ones(2, np.float32)},
                                         records=[pickle.dumps(torch_legacy.MAGIC_NUMBER, protocol=2),
                                                  pickle.dumps(1001, protocol=2), _pickle_payload(evil)])
    for path in (in_object, in_header):
        with pytest.raises(WeightFileError, match=f"refusing to load {module}.{name}"):
            read_weight_file(path)
    assert not marker.exists()


def _pickle_payload(payload):
    import io

    from conftest import _TorchLikePickler  # the pickler that writes any global without importing it

    buffer = io.BytesIO()
    _TorchLikePickler(buffer).dump(payload)
    return buffer.getvalue()


def test_damaged_files_are_clear_errors(tmp_path, torch_files):
    good = torch_files.write_legacy(tmp_path / "good.pth", {"a": np.ones((4, 4), np.float32),
                                                            "b": np.arange(3, dtype=np.int64)})
    data = good.read_bytes()
    cases = {
        "truncated": (data[:-5], "cut short|past the end"),
        "no storages": (data[:data.rindex(b"]q") + 3], "cut short|no end|malformed"),
        "magic only": (torch_legacy.LEGACY_MAGIC + b"\x00" * 64, "malformed|no end"),
        "wrong protocol": (data.replace(b"M\xe9\x03.", b"M\xe8\x03.", 1), "protocol 1000"),
        "wrong count": (data.replace(np.array(16, "<i8").tobytes(), np.array(17, "<i8").tobytes(), 1),
                        "holds 17 elements, the pickle expects 16"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.pth"
        path.write_bytes(content)
        with pytest.raises(WeightFileError, match=message) as caught:
            read_weight_file(path)
        assert "\n" not in str(caught.value), name
    bare = tmp_path / "bare.pkl"
    bare.write_bytes(pickle.dumps({"w": [1.0]}, protocol=2))
    with pytest.raises(WeightFileError, match="without PyTorch's magic number"):
        read_weight_file(bare)


def test_a_storage_missing_from_the_key_list_is_refused(tmp_path, torch_files):
    path = torch_files.write_legacy(tmp_path / "w.pth", {"a": np.ones(3, np.float32)})
    data = path.read_bytes()
    keys = pickle.dumps(["0"], protocol=2)
    path.write_bytes(data.replace(keys, pickle.dumps(["9"], protocol=2)))
    with pytest.raises(WeightFileError, match=r"storage\(s\) \['0'\] referenced by the pickle are not in the file"):
        read_weight_file(path)


def test_views_that_repeat_one_storage_are_bounded(tmp_path, torch_files):
    storage = np.zeros(1024, np.float32)
    views = {f"v{i}": torch_files.TensorView(storage, 0, (1024,), (1,)) for i in range(300)}
    path = torch_files.write_legacy(tmp_path / "views.pth", views)
    assert os.path.getsize(path) < 64 * 1024
    with pytest.raises(WeightFileError, match="views repeat the same data"):
        read_torch_state_dict(path)
    assert torch_unpickler.VIEW_AMPLIFICATION * 4096 + torch_unpickler.SLACK_BYTES < 300 * 4096


def test_convert_reads_legacy_files(tmp_path, rng, torch_files, zoo_files):
    from tlkit.zoo import vgg16

    weights = zoo_files.made_up(vgg16.weight_shapes(include_top=False), rng)
    src = torch_files.write_legacy(tmp_path / "vgg16-legacy.pth", zoo_files.to_torchvision(vgg16, weights))
    dst = tmp_path / "vgg16_tlkit.h5"
    result = CliRunner().invoke(main, ["convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    stored = read_weight_file(dst)
    for name, arrays in weights:
        np.testing.assert_array_equal(stored.layers[name][0], arrays[0])
