"""Decoding, odd files, flow_from_directory / flow_from_dataframe, real photos, the CLI."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from tlkit.augment import ImageDataGenerator, ImageLoadError, array_to_img, img_to_array, load_img, save_img
from tlkit.augment.image_io import check_image, decode


def write(path, img, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def pattern(h=24, w=32):
    r, c = np.mgrid[0:h, 0:w]
    return np.stack([r * 10 % 256, c * 7 % 256, (r + c) * 5 % 256], -1).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """Two classes of small PNG/JPEG pictures plus the odd files real folders contain."""
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        for i in range(5):
            write(tmp_path / cls / f"{i}.png", Image.fromarray(rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)))
    good_jpeg = io.BytesIO()
    Image.fromarray(pattern(64, 64)).save(good_jpeg, "JPEG")
    (tmp_path / "cats" / "empty.jpg").write_bytes(b"")
    (tmp_path / "cats" / "truncated.jpg").write_bytes(good_jpeg.getvalue()[:300])
    (tmp_path / "dogs" / "notes.png").write_text("not a picture")
    (tmp_path / "dogs" / ".DS_Store").write_bytes(b"\0\1\2")
    return tmp_path


def test_modes_are_converted(tmp_path):
    rgb = pattern()
    write(tmp_path / "p.png", Image.fromarray(rgb).convert("P"), transparency=0)
    write(tmp_path / "rgba.png", Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), "RGBA"))
    write(tmp_path / "cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), quality=95)
    sixteen = (rgb[..., 0].astype(np.uint16) * 257)
    write(tmp_path / "i16.png", Image.fromarray(sixteen))
    assert decode(tmp_path / "p.png").shape == (24, 32, 3)
    assert decode(tmp_path / "p.png", "rgba")[..., 3].min() == 0  # palette transparency kept as alpha
    rgba = decode(tmp_path / "rgba.png", "rgba")
    assert rgba.shape == (24, 32, 4) and np.all(rgba[..., 3] == 128)
    assert np.array_equal(decode(tmp_path / "rgba.png"), rgb)
    assert np.abs(decode(tmp_path / "cmyk.jpg").astype(int) - rgb).mean() < 10
    gray16 = decode(tmp_path / "i16.png", "grayscale")
    assert gray16.dtype == np.uint8 and np.array_equal(gray16[..., 0], rgb[..., 0])  # 16 -> 8 bits, not clipped
    assert decode(tmp_path / "i16.png").shape == (24, 32, 3)


def test_exif_orientation_and_draft(tmp_path):
    img = Image.fromarray(pattern(40, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the viewer turns it upright
    write(tmp_path / "rot.jpg", img, exif=exif, quality=95)
    assert decode(tmp_path / "rot.jpg").shape == (80, 40, 3)
    big = Image.fromarray(np.kron(pattern(30, 40), np.ones((20, 20, 1), np.uint8)))  # 600x800
    write(tmp_path / "big.jpg", big, quality=95)
    small = decode(tmp_path / "big.jpg", target_size=(60, 80), interpolation="bilinear")
    full = np.asarray(big.resize((80, 60), Image.Resampling.BILINEAR))
    assert small.shape == (60, 80, 3) and np.abs(small.astype(int) - full).mean() < 8
    square = decode(tmp_path / "big.jpg", target_size=(50, 50), keep_aspect_ratio=True)
    assert square.shape == (50, 50, 3)


def test_keras_helpers_round_trip(tmp_path):
    x = pattern().astype(np.float32)
    img = array_to_img(x, scale=False)
    assert img.mode == "RGB" and np.array_equal(img_to_array(img), x)
    assert img_to_array(img, data_format="channels_first").shape == (3, 24, 32)
    save_img(tmp_path / "out.png", x, scale=False)
    assert np.array_equal(img_to_array(load_img(tmp_path / "out.png")), x)
    assert load_img(tmp_path / "out.png", color_mode="grayscale", target_size=(12, 16)).size == (16, 12)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    with pytest.raises(ValueError, match="color_mode"):
        load_img(tmp_path / "out.png", color_mode="cmyk")


def test_bad_files_are_recognised(folder):
    assert check_image(folder / "cats" / "0.png") is None
    assert check_image(folder / "cats" / "empty.jpg") == "empty file"
    assert "truncated" in check_image(folder / "cats" / "truncated.jpg").lower()
    assert "not a readable image" in check_image(folder / "dogs" / "notes.png")
    with pytest.raises(ImageLoadError, match="empty"):
        decode(folder / "cats" / "empty.jpg")


def test_flow_from_directory_skips_bad_files_once(folder):
    with pytest.warns(UserWarning, match="Skipped 3 unreadable"):
        it = ImageDataGenerator().flow_from_directory(folder, target_size=(8, 12), batch_size=4, seed=0)
    assert it.samples == 10 and len(it.skipped) == 3 and it.class_indices == {"cats": 0, "dogs": 1}
    assert it.filenames[0] == os.path.join("cats", "0.png")
    batches = [next(it) for _ in range(len(it))]
    assert sum(len(b[0]) for b in batches) == 10 and batches[0][0].shape[1:] == (8, 12, 3)


def test_file_breaking_after_the_scan_is_replaced_in_its_batch(folder):
    it = ImageDataGenerator().flow_from_directory(folder, classes=["dogs"], target_size=(8, 8), batch_size=5,
                                                  shuffle=False, class_mode="sparse", workers=0)
    (folder / "dogs" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.warns(UserWarning, match="unreadable image"):
        x, y = it[0]
    assert x.shape == (5, 8, 8, 3) and len(it.skipped) == 1 + 1  # notes.png at the scan, 1.png now
    assert np.array_equal(x[1], x[2])  # 1.png's place went to the next readable picture, 2.png


@pytest.mark.parametrize("class_mode", ["categorical", "binary", "sparse", "input", None])
def test_class_modes(folder, class_mode):
    with pytest.warns(UserWarning):
        it = ImageDataGenerator(rescale=1 / 255).flow_from_directory(folder, target_size=(6, 6), batch_size=10,
                                                                     shuffle=False, class_mode=class_mode)
    out = it[0]
    if class_mode is None:
        assert out.shape == (10, 6, 6, 3)
        return
    x, y = out
    want = {"categorical": np.repeat(np.eye(2), 5, axis=0), "binary": np.repeat([0.0, 1.0], 5),
            "sparse": np.repeat([0.0, 1.0], 5), "input": x}[class_mode]
    assert np.array_equal(y, want)
    with pytest.raises(ValueError, match="class_mode"):
        ImageDataGenerator().flow_from_directory(folder, class_mode="raw")


def test_grayscale_rgba_and_save_to_dir(folder, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("saved")
    with pytest.warns(UserWarning):
        gray = ImageDataGenerator().flow_from_directory(folder, target_size=(6, 6), color_mode="grayscale",
                                                        batch_size=3, save_to_dir=out_dir, save_format="jpeg",
                                                        workers=0)
        rgba = ImageDataGenerator().flow_from_directory(folder, target_size=(6, 6), color_mode="rgba", batch_size=3)
    assert next(gray)[0].shape == (3, 6, 6, 1) and next(rgba)[0].shape == (3, 6, 6, 4)
    assert len(list(out_dir.glob("_*.jpeg"))) == 3


def test_flow_from_dataframe_with_a_dict(folder):
    table = {"filename": [f"cats/{i}.png" for i in range(5)] + [f"dogs/{i}.png" for i in range(5)] + ["gone.png"],
             "class": ["cat"] * 5 + ["dog"] * 5 + ["cat"], "w": list(range(11))}
    with pytest.warns(UserWarning, match="invalid image filename"):
        it = ImageDataGenerator().flow_from_dataframe(table, directory=folder, weight_col="w", target_size=(5, 5),
                                                      class_mode="binary", batch_size=10, shuffle=False)
    x, y, w = it[0]
    assert x.shape == (10, 5, 5, 3) and y.tolist() == [0] * 5 + [1] * 5 and w.tolist() == list(range(10))
    raw = ImageDataGenerator().flow_from_dataframe(table, directory=folder, y_col="w", class_mode="raw",
                                                   target_size=(5, 5), batch_size=4, shuffle=False)
    assert raw[0][1].tolist() == [0, 1, 2, 3]


def test_flow_from_dataframe_with_pandas(folder):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"filename": [f"dogs/{i}.png" for i in range(5)], "class": ["a", "b", "a", "b", "a"]})
    it = ImageDataGenerator(validation_split=0.4).flow_from_dataframe(df, folder, target_size=(5, 5),
                                                                      subset="training", shuffle=False)
    assert it.samples == 3 and it[0][1].tolist() == [[1, 0], [0, 1], [1, 0]]


def test_real_photos(shared_data):
    root = shared_data / "datasets" / "hymenoptera_data" / "val"
    gen = ImageDataGenerator(rotation_range=30, horizontal_flip=True, rescale=1 / 255, validation_split=0.25)
    train = gen.flow_from_directory(root, target_size=(64, 64), batch_size=16, subset="training", seed=0)
    val = gen.flow_from_directory(root, target_size=(64, 64), batch_size=16, subset="validation", seed=0)
    assert train.samples + val.samples == 153 and not set(train.filenames) & set(val.filenames)
    x, y = next(train)
    assert x.shape == (16, 64, 64, 3) and 0 <= x.min() and x.max() <= 1 and y.sum() == 16
    gif = shared_data / "datasets" / "hymenoptera_data" / "train" / "ants" / "imageNotFound.gif"
    assert decode(gif, target_size=(32, 32)).shape == (32, 32, 3)  # the palette placeholder loads


def test_real_folder_with_stray_file(shared_data):
    root = shared_data / "datasets" / "flowers"
    it = ImageDataGenerator(validation_split=0.02).flow_from_directory(root, target_size=(32, 32), batch_size=8,
                                                                       subset="validation", seed=0)
    assert it.num_classes == 5 and it.samples > 50 and not it.skipped  # .DS_Store is not an image: ignored
    assert next(it)[0].shape == (8, 32, 32, 3)


def test_cli_grid(folder, tmp_path):
    from click.testing import CliRunner

    from tlkit.augment.cli import augment

    out = tmp_path / "grid.png"
    result = CliRunner().invoke(augment, [str(folder / "cats" / "0.png"), "-n", "4", "--out", str(out), "--size",
                                          "32", "--rotation", "30", "--flip", "horizontal", "--brightness",
                                          "0.8,1.2", "--fill-mode", "reflect"])
    assert result.exit_code == 0, result.output
    # The preview is a labelled matplotlib grid, the original first (tests/apps/test_plots.py checks its
    # tiles); here: a real PNG with room for the 5 tiles.
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width >= 2 * 32 and im.height >= 2 * 32
    bad = CliRunner().invoke(augment, [str(folder), "--out", str(tmp_path / "g.gif2")])
    assert bad.exit_code != 0


def test_scan_shows_progress_when_slow_and_nothing_when_quiet(folder, monkeypatch, capsys):
    from tlkit.augment import image_io

    monkeypatch.setattr(image_io, "SCAN_PROGRESS_DELAY", 0.0)  # as if the scan were slow
    ImageDataGenerator().flow_from_directory(folder, target_size=(8, 8), workers=0)
    out = capsys.readouterr().out
    assert "13/13 [" in out and "files/s" in out  # 10 pictures + 3 broken files, hidden file not listed
    assert "Found 10 images belonging to 2 classes." in out
    ImageDataGenerator().flow_from_directory(folder, target_size=(8, 8), workers=0, verbose=0)
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(image_io, "SCAN_PROGRESS_DELAY", 60.0)  # a fast scan shows no bar
    ImageDataGenerator().flow_from_directory(folder, target_size=(8, 8), workers=0)
    assert capsys.readouterr().out == "Found 10 images belonging to 2 classes.\n"


def test_each_file_is_checked_once_until_it_changes(folder, monkeypatch):
    from tlkit.augment import image_io

    checked = []
    real = image_io.check_image
    monkeypatch.setattr(image_io, "check_image", lambda p: checked.append(p) or real(p))
    gen = ImageDataGenerator(validation_split=0.4)
    for subset in ("training", "validation", "training"):
        gen.flow_from_directory(folder, target_size=(8, 8), subset=subset, workers=0, verbose=0)
    assert sorted(checked) == sorted(set(checked)) and len(checked) == 13
    broken = folder / "dogs" / "notes.png"
    write(broken, Image.fromarray(pattern()))  # fixed: a real picture now
    os.utime(broken, ns=(1, 1))  # a different mtime even on coarse-clock filesystems
    it = ImageDataGenerator().flow_from_directory(folder, target_size=(8, 8), workers=0, verbose=0)
    assert checked.count(str(broken)) == 2 and it.samples == 11
