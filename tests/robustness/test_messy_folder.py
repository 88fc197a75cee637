"""A folder as people really have them: every kind of broken, odd and hostile file. The scan reports
what it skipped and why; training on the rest completes."""
import json
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tlkit.augment import ImageDataGenerator, image_io
from tlkit.cli import main

GOOD_PER_CLASS = 6


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    rng = np.random.default_rng(0)
    for name in ("cats", "dögs_ñ"):  # non-ASCII class name too
        (root / name).mkdir()
        for i in range(GOOD_PER_CLASS):
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / name / f"ok_{i}.jpg")
    cats = root / "cats"
    good = (cats / "ok_0.jpg").read_bytes()
    # Odd but readable: each must load.
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).convert("P").save(cats / "palette.png",
                                                                                      transparency=0)
    Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)).save(cats / "sixteen_bit.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).convert("CMYK").save(cats / "cmyk.jpg")
    rgba = Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8), "RGBA")
    rgba.save(cats / "rgba.png")
    exif = Image.fromarray(rng.integers(0, 255, (10, 30, 3), dtype=np.uint8)).getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    Image.fromarray(rng.integers(0, 255, (10, 30, 3), dtype=np.uint8)).save(cats / "exif_rotated.jpg", exif=exif)
    (cats / "ünïcödé 名前.jpg").write_bytes(good)
    # Broken: each must be skipped and reported.
    (cats / "zero_bytes.jpg").write_bytes(b"")
    (cats / "truncated.jpg").write_bytes(good[: len(good) // 2])
    png = cats / "palette.png"
    (cats / "truncated.png").write_bytes(png.read_bytes()[:40])
    (cats / "notes.jpg").write_text("this is a text file named .jpg")
    os.symlink(root / "nowhere.jpg", cats / "broken_link.jpg")
    (cats / ".hidden.jpg").write_bytes(good)  # hidden: ignored, not an image of the class
    (cats / ".thumbnails").mkdir()
    (cats / ".thumbnails" / "thumb.jpg").write_bytes(good)
    # A decompression bomb: a tiny PNG that claims ~1.6 gigapixels.
    Image.new("L", (40000, 40000)).save(cats / "bomb.png", optimize=True)
    unreadable = cats / "no_permission.jpg"
    unreadable.write_bytes(good)
    unreadable.chmod(0)
    return root


EXPECTED_SKIPPED = {"zero_bytes.jpg", "truncated.jpg", "truncated.png", "notes.jpg", "broken_link.jpg", "bomb.png"}
EXPECTED_LOADED = {"palette.png", "sixteen_bit.png", "cmyk.jpg", "rgba.png", "exif_rotated.jpg", "ünïcödé 名前.jpg"}


def test_scan_skips_broken_files_with_reasons_and_loads_the_rest(messy):
    with pytest.warns(UserWarning, match="Skipped"):
        it = ImageDataGenerator().flow_from_directory(messy, target_size=(16, 16), batch_size=64, shuffle=False)
    skipped = {os.path.basename(p): reason for p, reason in it.skipped}
    expected = set(EXPECTED_SKIPPED)
    if os.geteuid() != 0:  # root reads files whatever their permissions
        expected.add("no_permission.jpg")
    assert expected <= set(skipped), skipped
    assert all(reason for reason in skipped.values())
    loaded = {os.path.basename(p) for p in it.filenames}
    assert EXPECTED_LOADED <= loaded and not (set(skipped) & loaded)
    assert ".hidden.jpg" not in loaded and "thumb.jpg" not in loaded
    x, y = next(it)
    assert x.shape == (it.samples, 16, 16, 3) and np.isfinite(x).all()
    assert it.class_indices == {"cats": 0, "dögs_ñ": 1}


def test_exif_rotation_is_applied(messy):
    img = image_io.load_img(messy / "cats" / "exif_rotated.jpg")
    assert img.size == (10, 30)  # stored 30 wide x 10 high, shown turned 90 degrees


def test_decompression_bomb_is_refused_without_decoding(messy):
    with pytest.raises(image_io.ImageLoadError):
        image_io.load_img(messy / "cats" / "bomb.png", target_size=(16, 16))


def test_training_on_a_messy_folder_completes_and_reports_what_was_skipped(messy, tmp_path):
    result = CliRunner().invoke(main, [
        "finetune", str(messy), "--base", "squeezenet", "--weights", "none", "--image-size", "48", "--epochs", "2",
        "--batch-size", "4", "--head", "gap,dense:8", "--verbose", "0", "--out", str(tmp_path / "run"),
        "--val-split", "0.25"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    reported = {os.path.basename(s["path"]) for s in report["skipped_images"]}
    assert EXPECTED_SKIPPED <= reported
    readable_by_root = 1 if os.geteuid() == 0 else 0  # no_permission.jpg
    assert report["train_images"] + report["val_images"] == 2 * GOOD_PER_CLASS + len(EXPECTED_LOADED) + readable_by_root
    assert "bomb.png" in (tmp_path / "run" / "report.md").read_text()
