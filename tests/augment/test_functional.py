"""Keras 2's functional API (tlkit.preprocessing.image): seeds, numpy/PIL references, Keras as an oracle."""
import io
import json
import os

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from tlkit.augment import DataFrameIterator, ImageDataGenerator, apply_affine_transform
from tlkit.preprocessing import image as kimage

HWC = {"row_axis": 0, "col_axis": 1, "channel_axis": 2}


@pytest.fixture
def picture():
    return np.random.default_rng(0).integers(0, 256, (9, 11, 3)).astype(np.float32)


# ----- random_*: Keras's draw from numpy's global state, then the pure apply -----
@pytest.mark.parametrize("fn, args, draw", [
    (kimage.random_rotation, (30,), lambda rs, h, w: {"theta": rs.uniform(-30, 30)}),
    (kimage.random_shift, (0.2, 0.3), lambda rs, h, w: {"tx": rs.uniform(-0.3, 0.3) * h,
                                                         "ty": rs.uniform(-0.2, 0.2) * w}),
    (kimage.random_shear, (15,), lambda rs, h, w: {"shear": rs.uniform(-15, 15)}),
    (kimage.random_zoom, ((0.7, 1.2),), lambda rs, h, w: dict(zip(("zx", "zy"), rs.uniform(0.7, 1.2, 2)))),
])
def test_random_geometric_draws_as_keras_and_applies_that(picture, fn, args, draw):
    np.random.seed(7)
    got = fn(picture, *args, **HWC, fill_mode="reflect")
    params = draw(np.random.RandomState(7), 9, 11)
    want = apply_affine_transform(picture, **params, **HWC, fill_mode="reflect")
    assert not np.allclose(want, picture)  # the draw really moved the picture
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.random.seed(7)
    np.testing.assert_array_equal(fn(picture, *args, **HWC, fill_mode="reflect"), got)  # same seed, same output


def test_random_rotation_channels_first_matches_channels_last(picture):
    np.random.seed(3)
    last = kimage.random_rotation(picture, 40, **HWC)
    np.random.seed(3)
    first = kimage.random_rotation(picture.transpose(2, 0, 1), 40)  # Keras's defaults: channels first
    np.testing.assert_allclose(first.transpose(1, 2, 0), last, atol=1e-5)


def test_random_zoom_and_brightness_refuse_a_range_that_is_not_a_pair(picture):
    with pytest.raises(ValueError, match="`zoom_range` should be a tuple or list of two floats"):
        kimage.random_zoom(picture, (0.5, 1.0, 2.0), **HWC)
    with pytest.raises(ValueError, match="brightness_range should be tuple or list of two floats"):
        kimage.random_brightness(picture, (0.5,))


def test_random_channel_shift_adds_one_intensity_clipped_to_the_picture_range(picture):
    np.random.seed(5)
    got = kimage.random_channel_shift(picture, 60.0, channel_axis=2)
    u = np.random.RandomState(5).uniform(-60, 60)
    np.testing.assert_allclose(got, np.clip(picture + u, picture.min(), picture.max()))


def pil_brightness(x8, factor):
    """PIL's own ImageEnhance on the 8-bit picture: the reference Keras's function is built on."""
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[x8.shape[2]]
    img = Image.fromarray(x8[:, :, 0] if mode == "L" else x8, mode)
    out = np.asarray(ImageEnhance.Brightness(img).enhance(factor), np.float32)
    return out[:, :, None] if out.ndim == 2 else out


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("factor", [0.3, 1.0, 1.7])
def test_apply_brightness_shift_is_pils_enhance(channels, factor):
    rng = np.random.default_rng(channels)
    x = rng.integers(0, 256, (6, 5, channels)).astype(np.float32)
    np.testing.assert_array_equal(kimage.apply_brightness_shift(x, factor, scale=False),
                                  pil_brightness(x.astype(np.uint8), factor))
    wide = x * 3 - 100  # outside 0..255: stretched for the trip through 8 bits
    lo, hi = wide.min(), wide.max()
    x8 = ((wide - lo) / (hi - lo) * 255).astype(np.uint8)
    np.testing.assert_allclose(kimage.apply_brightness_shift(wide, factor, scale=True), pil_brightness(x8, factor))
    np.testing.assert_allclose(kimage.apply_brightness_shift(wide, factor, scale=False),
                               pil_brightness(x8, factor) / 255 * (hi - lo) + lo, rtol=1e-5, atol=1e-3)


def test_random_brightness_draws_as_keras():
    x = np.random.default_rng(1).integers(0, 256, (4, 4, 3)).astype(np.float32)
    np.random.seed(11)
    got = kimage.random_brightness(x, (0.5, 1.5), scale=False)
    u = np.random.RandomState(11).uniform(0.5, 1.5)
    np.testing.assert_array_equal(got, pil_brightness(x.astype(np.uint8), u))


# ----- images and files -----
def test_int16_array_round_trips_unchanged():
    x = np.array([[0, 300, -1000], [20000, 5, 32000]], np.int16)[:, :, None]
    back = kimage.img_to_array(kimage.array_to_img(x, scale=False), dtype="int16")
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, x)


def test_16bit_png_round_trips_through_save_img_and_load_img(tmp_path):
    x = np.array([[0, 300, 1000], [20000, 5, 65535]], np.int32)[:, :, None]
    kimage.save_img(tmp_path / "wide.png", x, scale=False)
    img = kimage.load_img(tmp_path / "wide.png", color_mode="grayscale")
    assert img.mode == "I;16"
    np.testing.assert_array_equal(kimage.img_to_array(img, dtype="int32"), x)
    np.testing.assert_array_equal(kimage.img_to_array(img, data_format="channels_first", dtype="uint16"),
                                  x.transpose(2, 0, 1))
    with pytest.raises(ValueError, match="Save as .tiff"):
        kimage.save_img(tmp_path / "neg.png", x - 1000, scale=False)
    assert not (tmp_path / "neg.png").exists()


def write_pictures(folder):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (5, 7), np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(rgb[:, :, 0]).save(folder / "gray.png")
    Image.fromarray((rng.integers(0, 60000, (5, 7))).astype(np.uint16)).save(folder / "gray16.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    return ["rgb.png", "rgba.png", "gray.png", "gray16.png", "palette.png"]


MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}


@pytest.mark.parametrize("color_mode", ["grayscale", "rgb", "rgba"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", ["float32", "uint8", "int16", "float64"])
def test_load_img_and_img_to_array_every_combination(tmp_path, color_mode, data_format, dtype):
    for name in write_pictures(tmp_path):
        pil = Image.open(tmp_path / name)
        wide = color_mode == "grayscale" and pil.mode == "I;16"
        if not wide and pil.mode.startswith("I;16"):
            continue  # 16-bit to rgb: tlkit scales to 8 bits where Pillow clips (documented)
        ref = np.asarray(pil if wide or pil.mode == MODES[color_mode] else pil.convert(MODES[color_mode]))
        ref = (ref[:, :, None] if ref.ndim == 2 else ref).astype(dtype)
        if data_format == "channels_first":
            ref = ref.transpose(2, 0, 1)
        got = kimage.img_to_array(kimage.load_img(tmp_path / name, color_mode=color_mode), data_format, dtype)
        assert got.dtype == np.dtype(dtype) and got.shape == ref.shape, name
        np.testing.assert_array_equal(got, ref, err_msg=name)


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB"), (4, "RGBA")])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_array_to_img_modes_and_scaling(channels, mode, data_format):
    x = np.random.default_rng(channels).uniform(-2, 3, (4, 6, channels)).astype(np.float32)
    arr = x if data_format == "channels_last" else x.transpose(2, 0, 1)
    img = kimage.array_to_img(arr, data_format=data_format)
    assert img.mode == mode and img.size == (6, 4)
    want = ((x - x.min()) / (x - x.min()).max() * 255).astype(np.uint8)
    np.testing.assert_array_equal(kimage.img_to_array(img, dtype="uint8"), want)
    with pytest.raises(ValueError, match="Unsupported channel number: 2"):
        kimage.array_to_img(np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="Expected image array to have rank 3"):
        kimage.array_to_img(np.zeros((3, 3)))


def test_save_img_to_a_file_object_needs_the_format():
    x = np.random.default_rng(0).integers(0, 256, (4, 4, 3)).astype(np.uint8)
    buf = io.BytesIO()
    kimage.save_img(buf, x, file_format="png", scale=False)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue()))), x)
    with pytest.raises(ValueError, match="needs file_format"):
        kimage.save_img(io.BytesIO(), x)


def test_list_pictures_takes_keras_extensions_only(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["a.jpg", "b.PNG", "sub/c.tiff", "d.gif", "e.webp", "f.txt", "g.jpg.bak", "h.xpng", ".hidden.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    found = [os.path.relpath(p, tmp_path) for p in kimage.list_pictures(tmp_path)]
    assert found == ["a.jpg", "b.PNG", os.path.join("sub", "c.tiff")]
    assert [os.path.basename(p) for p in kimage.list_pictures(tmp_path, ext="gif")] == ["d.gif"]
    assert kimage.validate_filename(str(tmp_path / "a.jpg"), ("jpg",))
    assert not kimage.validate_filename(str(tmp_path / "h.xpng"), ("png",))
    assert not kimage.validate_filename(str(tmp_path / "missing.jpg"), ("jpg",))


def test_dataframe_iterator_drops_non_keras_extensions_and_sorts_classes(tmp_path):
    names = ["a.png", "b.JPG", "c.txt", "d.gif", "e.webp", "f.tiff", "h.xpng", "i.bmp", "missing.png"]
    for n in names[:-1]:
        Image.new("RGB", (4, 4)).save(tmp_path / n, "PNG")
    table = {"filename": names, "class": ["dog", "Cat", "cat", "b", "a", "dog", "B", "A", "x"]}
    with pytest.warns(UserWarning, match="Found 5 invalid image filename"):
        it = DataFrameIterator(table, str(tmp_path), ImageDataGenerator(), target_size=(4, 4), verbose=0)
    assert it.filenames == ["a.png", "b.JPG", "f.tiff", "i.bmp"]
    assert it.class_indices == {"A": 0, "Cat": 1, "dog": 2}
    assert list(it.classes) == [2, 1, 2, 0]


def test_empty_directory_behaves_as_keras(tmp_path, capsys):
    it = ImageDataGenerator().flow_from_directory(str(tmp_path), target_size=(8, 8))
    assert "Found 0 images belonging to 0 classes." in capsys.readouterr().out
    assert len(it) == 0 and it.samples == 0 and it.class_indices == {}
    with pytest.raises(ValueError, match="Asked to retrieve element 0, but the Sequence has length 0"):
        it[0]


# ----- Keras itself, when the peers' Python has it -----
def test_same_outputs_as_keras(tmp_path, picture, keras_oracle):
    cases, arrays = [], {}

    def add(case, x=None):
        if x is not None:
            arrays[f"x{len(cases)}"] = x
        cases.append(case)

    chw = picture.transpose(2, 0, 1)
    add({"fn": "random_rotation", "seed": 1, "args": [30]}, chw)
    add({"fn": "random_shift", "seed": 2, "args": [0.2, 0.3], "kwargs": {**HWC, "fill_mode": "wrap"}}, picture)
    add({"fn": "random_shear", "seed": 3, "args": [20], "kwargs": {**HWC, "fill_mode": "constant", "cval": 9.0}},
        picture)
    add({"fn": "random_zoom", "seed": 4, "args": [[0.6, 1.3]], "kwargs": {**HWC, "interpolation_order": 0}}, picture)
    add({"fn": "random_channel_shift", "seed": 5, "args": [40.0], "kwargs": {"channel_axis": 2}}, picture)
    add({"fn": "random_brightness", "seed": 6, "args": [[0.2, 1.8]]}, picture * 2 - 30)
    add({"fn": "random_brightness", "seed": 6, "args": [[0.2, 1.8], False]}, picture * 2 - 30)
    add({"fn": "random_zoom", "seed": 0, "args": [[0.5, 1.0, 2.0]]}, chw)
    for channels in (1, 3, 4):
        for data_format in ("channels_last", "channels_first"):
            x = np.random.default_rng(channels).uniform(-1, 700, (5, 6, channels)).astype(np.float32)
            x = x if data_format == "channels_last" else x.transpose(2, 0, 1)
            for scale in (True, False):
                add({"fn": "array_to_img", "kwargs": {"data_format": data_format, "scale": scale},
                     "to_array": {"data_format": data_format}}, x)
    add({"fn": "array_to_img", "kwargs": {"scale": False}, "to_array": {"dtype": "int16"}},
        np.array([[0, 300, -1000], [20000, 5, 32000]], np.int16)[:, :, None])
    for name in write_pictures(tmp_path):
        for color_mode in ("grayscale", "rgb", "rgba"):
            if name == "gray16.png" and color_mode != "grayscale":
                continue
            for data_format, dtype in (("channels_last", "float32"), ("channels_first", "int32")):
                add({"fn": "load_img", "path": str(tmp_path / name),
                     "kwargs": {"color_mode": color_mode, "target_size": [4, 5]},
                     "to_array": {"data_format": data_format, "dtype": dtype}})
    np.savez(tmp_path / "cases.npz", cases=json.dumps(cases), **arrays)
    keras = keras_oracle("keras_functional_oracle.py", tmp_path / "cases.npz", tmp_path / "out.npz")
    for i, case in enumerate(cases):
        x = arrays.get(f"x{i}")
        kwargs = case.get("kwargs", {})
        if f"e{i}" in keras:
            with pytest.raises(Exception) as raised:
                getattr(kimage, case["fn"])(x, *case.get("args", []), **kwargs)
            assert str(raised.value) == str(keras[f"e{i}"]).split(": ", 1)[1], case
            continue
        if case["fn"] == "load_img":
            got = kimage.img_to_array(kimage.load_img(case["path"], **kwargs), **case["to_array"])
        elif case["fn"] == "array_to_img":
            got = kimage.img_to_array(kimage.array_to_img(x, **kwargs), **case["to_array"])
        else:
            np.random.seed(case["seed"])
            got = getattr(kimage, case["fn"])(x, *case.get("args", []), **kwargs)
        assert got.shape == keras[f"y{i}"].shape, case
        np.testing.assert_allclose(got, keras[f"y{i}"], atol=2e-3, err_msg=str(case))
