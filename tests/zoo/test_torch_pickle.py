"""PyTorch zip state dicts read without torch, through an unpickler that runs nothing.

Files are made by ``torch_files.write`` (conftest.py: torch.save's layout and opcodes, no
torch needed) and, where torch is installed, by ``torch.save`` itself.
"""
import collections
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlkit.zoo.weights import WeightFileError, read_torch_state_dict, read_weight_file
from tlkit.zoo.weights import torch_pickle


def test_reads_names_in_order_and_values(tmp_path, rng, torch_files):
    state = torch_files.sample_state_dict(rng)
    wf = read_weight_file(torch_files.write(tmp_path / "w.pth", state))
    assert wf.format == "torch"
    assert list(wf.tensors) == list(state)
    for name, array in state.items():
        assert wf.tensors[name].shape == array.shape, name
        np.testing.assert_array_equal(wf.tensors[name], array.astype(np.float32) if array.dtype.kind == "f" else array)
    assert wf.tensors["conv.weight"].dtype == np.float32 and wf.tensors["double"].dtype == np.float32
    assert wf.tensors["bn.num_batches_tracked"].dtype == np.int64


def test_float32_false_keeps_dtypes(tmp_path, rng, torch_files):
    state = torch_files.sample_state_dict(rng)
    wf = read_torch_state_dict(torch_files.write(tmp_path / "w.pth", state), float32=False)
    for name, array in state.items():
        assert wf.tensors[name].dtype == array.dtype, name


def test_strides_offsets_and_shared_storages_are_honoured(tmp_path, torch_files):
    storage = np.arange(30, dtype=np.float32)
    view = torch_files.TensorView
    state = {
        "transposed": view(storage, 0, (5, 6), (1, 5)),           # a.t() of a (6, 5) tensor
        "sliced": view(storage, 7, (2, 3), (6, 2)),               # offset and step
        "column": view(storage, 2, (4, 1), (6, 1)),
        "parameter": view(storage, 10, (3,), (1,), parameter=True),
    }
    path = torch_files.write(tmp_path / "w.pt", state)
    with zipfile.ZipFile(path) as archive:  # one storage shared by all four views
        assert [n for n in archive.namelist() if "/data/" in n] == ["archive/data/0"]
    wf = read_torch_state_dict(path)
    np.testing.assert_array_equal(wf.tensors["transposed"], storage.reshape(6, 5).T)
    np.testing.assert_array_equal(wf.tensors["sliced"], [[7, 9, 11], [13, 15, 17]])
    np.testing.assert_array_equal(wf.tensors["column"], storage[[2, 8, 14, 20]].reshape(4, 1))
    np.testing.assert_array_equal(wf.tensors["parameter"], storage[10:13])
    assert all(a.flags.c_contiguous for a in wf.tensors.values())


def test_nested_checkpoints_are_flattened_and_other_values_skipped(tmp_path, rng, torch_files):
    weight = rng.standard_normal((2, 2)).astype(np.float32)
    checkpoint = {"epoch": 3, "note": "best", "model": {"fc.weight": weight}, "history": [np.ones(2, np.float32)]}
    wf = read_torch_state_dict(torch_files.write(tmp_path / "ckpt.pt", checkpoint))
    assert list(wf.tensors) == ["model.fc.weight", "history.0"]
    np.testing.assert_array_equal(wf.tensors["model.fc.weight"], weight)


def test_big_endian_files(tmp_path, rng, torch_files):
    state = {"w": rng.standard_normal((3, 2)).astype(np.float32), "n": np.arange(3, dtype=np.int64)}
    wf = read_torch_state_dict(torch_files.write(tmp_path / "be.pt", state, byteorder="big"))
    np.testing.assert_array_equal(wf.tensors["w"], state["w"])
    np.testing.assert_array_equal(wf.tensors["n"], state["n"])


# --- hostile pickles ----------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("where", ["top", "after_a_tensor", "inside_a_tensor"])
def test_hostile_pickle_is_refused_and_nothing_runs(tmp_path, torch_files, index, where):
    marker = tmp_path / "pwned"
    module, name, args = torch_files.hostile_payloads(marker)[index]
    payload = torch_files.Payload(torch_files.Global(module, name), *args)
    if where == "top":
        obj = payload
    elif where == "after_a_tensor":
        obj = collections.OrderedDict([("ok.weight", np.ones(3, np.float32)), ("evil", payload)])
    else:  # as the storage argument of an allowed rebuild function
        obj = {"w": torch_files.Payload(torch_files.Global("torch._utils", "_rebuild_tensor_v2"),
                                        payload, 0, (1,), (1,), False, collections.OrderedDict())}
    path = torch_files.write(tmp_path / "evil.pth", obj)
    with pytest.raises(WeightFileError) as info:
        read_weight_file(path)
    message = str(info.value)
    assert f"refusing to load {module}.{name}" in message
    assert "only tensor data is allowed" in message and "evil.pth" in message
    assert not marker.exists()


def test_the_hostile_payload_really_runs_under_a_plain_unpickler(tmp_path, torch_files):
    """Control for the test above: the same bytes do create the marker when unpickled naively."""
    marker = tmp_path / "pwned"
    module, name, args = torch_files.hostile_payloads(marker)[0]
    path = torch_files.write(tmp_path / "evil.pth", torch_files.Payload(torch_files.Global(module, name), *args))
    with zipfile.ZipFile(path) as archive:
        data = archive.read("archive/data.pkl")
    pickle.loads(data)
    assert marker.exists()


def test_a_pickle_cannot_rewire_the_allowed_globals(tmp_path, torch_files):
    # GLOBAL torch._utils._rebuild_tensor_v2; BUILD with slot state {"function": OrderedDict}
    evil = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x08\x00\x00\x00function"
            b"ccollections\nOrderedDict\ns\x86b.")
    path = torch_files.write(tmp_path / "rewire.pt", {}, pickle_bytes=evil)
    with pytest.raises(WeightFileError, match="cannot be modified"):
        read_torch_state_dict(path)
    assert torch_pickle.ALLOWED_GLOBALS[("torch._utils", "_rebuild_tensor_v2")].function is torch_pickle._tensor
    good = read_torch_state_dict(torch_files.write(tmp_path / "good.pt", {"w": np.ones(2, np.float32)}))
    np.testing.assert_array_equal(good.tensors["w"], [1, 1])


def test_unexpected_persistent_ids_are_refused(tmp_path, torch_files):
    # persistent id ("storage", os.system, ...): the GLOBAL is refused before anything else
    evil = b"\x80\x02(X\x07\x00\x00\x00storagecos\nsystem\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQ."
    with pytest.raises(WeightFileError, match="refusing to load os.system"):
        read_torch_state_dict(torch_files.write(tmp_path / "pid.pt", {}, pickle_bytes=evil))
    weird = b"\x80\x02X\x04\x00\x00\x00evilQ."
    with pytest.raises(WeightFileError, match="unexpected persistent id"):
        read_torch_state_dict(torch_files.write(tmp_path / "pid2.pt", {}, pickle_bytes=weird))


# --- damaged and foreign files ------------------------------------------------------------------


def test_missing_or_short_storages_are_refused(tmp_path, torch_files):
    path = torch_files.write(tmp_path / "w.pt", {"w": np.ones((4, 4), np.float32)})
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    for name, change in [("missing.pt", None), ("short.pt", members["archive/data/0"][:-4])]:
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            for member, data in members.items():
                if member == "archive/data/0":
                    if change is None:
                        continue
                    data = change
                archive.writestr(member, data)
        with pytest.raises(WeightFileError, match="storage '0'"):
            read_torch_state_dict(tmp_path / name)


def test_tensor_geometry_beyond_its_storage_is_refused(tmp_path, torch_files):
    storage = np.arange(6, dtype=np.float32)
    for size, stride, offset in [((3, 3), (3, 1), 0), ((6,), (1,), 1), ((1000000, 1000000), (0, 0), 0)]:
        path = torch_files.write(tmp_path / "g.pt", {"w": torch_files.TensorView(storage, offset, size, stride)})
        with pytest.raises(WeightFileError, match="storage"):
            read_torch_state_dict(path)


def test_truncated_and_foreign_zips_are_refused(tmp_path, rng, torch_files):
    path = torch_files.write(tmp_path / "w.pt", torch_files.sample_state_dict(rng))
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match="cut.pt"):
        read_weight_file(tmp_path / "cut.pt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(WeightFileError, match="neither Keras nor PyTorch"):
        read_weight_file(tmp_path / "other.zip")
    with pytest.raises(WeightFileError, match="not a torch.save archive"):
        read_torch_state_dict(tmp_path / "other.zip")
    with pytest.raises(WeightFileError, match="holds no tensors"):
        read_torch_state_dict(torch_files.write(tmp_path / "none.pt", {"epoch": 1}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_files_only_ever_raise_weight_file_error(tmp_path, torch_files, data):
    path = tmp_path / "fuzz.pt"
    if not path.exists():
        torch_files.write(path, {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(2, np.int64)})
    original = bytearray(path.read_bytes())
    corrupted = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        corrupted[data.draw(st.integers(0, len(corrupted) - 1))] = data.draw(st.integers(0, 255))
    corrupted = corrupted[: data.draw(st.integers(1, len(corrupted)))]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(corrupted))
    try:
        read_torch_state_dict(bad)
    except WeightFileError:
        pass


def test_pickle_opcodes_are_fuzzed_safely(tmp_path, torch_files):
    """Every single-byte change of data.pkl is either read or refused with WeightFileError."""
    path = torch_files.write(tmp_path / "w.pt", {"a": np.arange(4, dtype=np.float32)})
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    pkl = members["archive/data.pkl"]
    rng = np.random.default_rng(1)
    for i in range(len(pkl)):
        mutated = bytearray(pkl)
        mutated[i] = int(rng.integers(256))
        bad = torch_files.write(tmp_path / "m.pt", {"a": np.arange(4, dtype=np.float32)}, pickle_bytes=bytes(mutated))
        try:
            read_torch_state_dict(bad)
        except WeightFileError:
            pass


# --- real torch.save files --------------------------------------------------------------------


def torchvision_vgg16_shapes(width=8, hidden=32, classes=10, spatial=7):
    """torchvision's vgg16 state dict keys and shapes, channel widths divided to stay small."""
    shapes, index, channels = collections.OrderedDict(), 0, 3
    for filters, convs in ((1, 2), (2, 2), (4, 3), (8, 3), (8, 3)):
        for _ in range(convs):
            shapes[f"features.{index}.weight"] = (filters * width, channels, 3, 3)
            shapes[f"features.{index}.bias"] = (filters * width,)
            channels = filters * width
            index += 2  # conv, relu
        index += 1  # pool
    for i, (out, inp) in zip((0, 3, 6), ((hidden, channels * spatial * spatial), (hidden, hidden), (classes, hidden))):
        shapes[f"classifier.{i}.weight"] = (out, inp)
        shapes[f"classifier.{i}.bias"] = (out,)
    return shapes


def test_real_torch_save_files(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = collections.OrderedDict([
        ("transposed", base.t()),
        ("sliced", base[1:, ::2]),
        ("param", torch.nn.Parameter(torch.linspace(-1, 1, 5))),
        ("half", torch.tensor([0.5, -2.0], dtype=torch.float16)),
        ("bf16", torch.tensor([1.5, -3.0], dtype=torch.bfloat16)),
        ("double", torch.tensor([1e-3], dtype=torch.float64)),
        ("steps", torch.tensor(11)),
        ("scalar", torch.tensor(2.5)),
    ])
    torch.save(state, tmp_path / "real.pth")
    wf = read_weight_file(tmp_path / "real.pth")
    assert list(wf.tensors) == list(state)
    for name, tensor in state.items():
        expected = tensor.detach().float().numpy() if tensor.is_floating_point() else tensor.numpy()
        np.testing.assert_array_equal(wf.tensors[name], expected, err_msg=name)
        assert wf.tensors[name].shape == tuple(tensor.shape)


def test_real_torchvision_shaped_vgg16_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    state = collections.OrderedDict(
        (name, torch.randn(shape, generator=generator)) for name, shape in torchvision_vgg16_shapes().items()
    )
    torch.save(state, tmp_path / "vgg16.pth")
    wf = read_weight_file(tmp_path / "vgg16.pth")
    assert list(wf.tensors) == list(state)
    assert wf.tensors["features.0.weight"].shape == (8, 3, 3, 3)
    assert wf.tensors["classifier.0.weight"].shape == (32, 64 * 49)
    for name, tensor in state.items():
        np.testing.assert_array_equal(wf.tensors[name], tensor.numpy())


def test_our_test_writer_matches_torch(tmp_path, rng, torch_files):
    """The torch-free writer the other tests rely on produces files torch itself loads."""
    torch = pytest.importorskip("torch")
    state = torch_files.sample_state_dict(rng)
    loaded = torch.load(torch_files.write(tmp_path / "w.pth", state), weights_only=True)
    assert list(loaded) == list(state)
    for name, array in state.items():
        np.testing.assert_array_equal(loaded[name].numpy(), array)


# --- view amplification (issue 14.1) -------------------------------------------------------------


def _many_views_file(path, torch_files, views, storage_floats=1 << 20):
    """``views`` tensors, each the whole of one shared ``storage_floats``-float storage (a 4 MB storage
    stored once; a reader copying every view would need ``views`` x 4 MB)."""
    storage = np.zeros(storage_floats, np.float32)
    state = {f"t{i}": torch_files.TensorView(storage, 0, (storage_floats,), (1,)) for i in range(views)}
    return torch_files.write(path, state)


def test_many_views_of_one_storage_are_refused_within_bounded_memory(tmp_path, torch_files, bounded_python):
    path = _many_views_file(tmp_path / "views.pt", torch_files, views=500)  # 2 GB if every view were copied
    result = bounded_python.run(
        "from tlkit.zoo.weights import WeightFileError, read_torch_state_dict\n",
        f"""
        try:
            read_torch_state_dict({str(path)!r})
            print("READ")
        except WeightFileError as e:
            print("REFUSED", e)
        """, headroom_mb=400)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("REFUSED") and "views repeat the same data" in result.stdout, result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_one_tensor_listed_many_times_is_refused(tmp_path, torch_files):
    """The pickle memo makes repeats of one tensor nearly free in the file; their copies are not."""
    view = torch_files.TensorView(np.zeros(1 << 18, np.float16), 0, (1 << 18,), (1,))
    path = torch_files.write(tmp_path / "memo.pt", {"repeated": [view] * 100})
    with pytest.raises(WeightFileError, match="views repeat the same data"):
        read_torch_state_dict(path)


def test_views_are_sliced_from_one_storage_read_once(tmp_path, torch_files, monkeypatch):
    storage = np.arange(12, dtype=np.float32)
    state = {"a": torch_files.TensorView(storage, 0, (3, 4), (4, 1)), "b": torch_files.TensorView(storage, 4, (8,), (1,)),
             "tied": torch_files.TensorView(storage, 0, (3, 4), (4, 1))}
    path = torch_files.write(tmp_path / "tied.pt", state)
    reads = []
    original = torch_pickle.read_member
    monkeypatch.setattr(torch_pickle, "read_member", lambda a, n, *args, **kw: reads.append(n) or original(a, n, *args, **kw))
    wf = read_torch_state_dict(path)
    assert [n for n in reads if "/data/" in n] == ["archive/data/0"]
    np.testing.assert_array_equal(wf.tensors["a"], storage.reshape(3, 4))
    np.testing.assert_array_equal(wf.tensors["b"], storage[4:])
    np.testing.assert_array_equal(wf.tensors["tied"], wf.tensors["a"])
    assert np.shares_memory(wf.tensors["a"], wf.tensors["b"])  # slices of the one storage, not copies


def test_tied_and_half_precision_weights_stay_within_the_bound(tmp_path, torch_files):
    """Real files: a tied float16 embedding (two names, one storage, widened to float32) reads."""
    storage = np.ones(1 << 20, np.float16)
    state = {"embed.weight": torch_files.TensorView(storage, 0, (1024, 1024), (1024, 1)),
             "head.weight": torch_files.TensorView(storage, 0, (1024, 1024), (1024, 1))}
    wf = read_torch_state_dict(torch_files.write(tmp_path / "tied16.pt", state))
    assert wf.tensors["head.weight"].dtype == np.float32 and wf.tensors["head.weight"].shape == (1024, 1024)


@pytest.mark.parametrize("size, stride", [((0, 2**61), (1, 1)), ((1,) * 40, (1,) * 40)])
def test_tensor_shapes_numpy_cannot_make_are_refused_clearly(tmp_path, torch_files, size, stride):
    state = {"t": torch_files.TensorView(np.zeros(1, np.float32), 0, size, stride)}
    with pytest.raises(WeightFileError, match="dimensions|too large"):
        read_torch_state_dict(torch_files.write(tmp_path / "dims.pt", state))
