"""Hostile image folders (issue 14.3-14.5): FIFOs, links to endless devices, huge files and link loops
end in a skipped file or a clear error, within bounded time and memory, for the training scan,
predict and evaluate alike (one folder walker, ``tlkit.augment.folders``)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import tlkit
from tlkit import layers as L
from tlkit.augment import folders, image_io

# Generous: a hang runs forever, a correct walk of these tiny folders takes well under a second.
HANG_TIMEOUT = 300


def picture(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def classes(tmp_path):
    data = tmp_path / "data"
    for i, name in enumerate(("ants", "bees", "wasps")):
        picture(data / name / f"{name}.png", i)
    return data


@pytest.fixture
def classifier(tmp_path):
    model = tlkit.Sequential([tlkit.Input((8, 8, 3)), L.Conv2D(2, 3), L.GlobalAveragePooling2D(),
                              L.Dense(3, activation="softmax")])
    path = tmp_path / "model.h5"
    model.save(path, metadata={"classes": ["ants", "bees", "wasps"], "image_size": 8, "preprocessing": "caffe"})
    return path


def cli(bounded_python, *args, headroom_mb=None):
    """``tlkit ARGS`` in a subprocess (a hang is a TimeoutExpired, not a frozen test run)."""
    return bounded_python.run("import sys\nfrom tlkit.cli import main\n",
                              f"sys.argv = ['tlkit'] + {[str(a) for a in args]!r}\nmain()\n",
                              headroom_mb=headroom_mb, timeout=HANG_TIMEOUT)


# --- FIFOs (14.3) -------------------------------------------------------------------------------


def test_a_fifo_named_like_a_picture_is_never_listed(classes):
    os.mkfifo(classes / "ants" / "x.jpg")
    assert [os.path.basename(p) for p in folders.image_files(classes / "ants")] == ["ants.png"]
    it = tlkit.augment.ImageDataGenerator().flow_from_directory(classes, target_size=(8, 8), verbose=0)
    assert it.samples == 3 and not any("x.jpg" in f for f in it.filenames)


def test_predict_and_evaluate_skip_a_fifo_in_a_folder(classes, classifier, bounded_python):
    os.mkfifo(classes / "ants" / "x.jpg")
    result = cli(bounded_python, "predict", classifier, classes, "--format", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    listed = [row["path"] for row in json.loads(result.stdout)]
    assert sorted(os.path.basename(p) for p in listed) == ["ants.png", "bees.png", "wasps.png"]
    result = cli(bounded_python, "evaluate", classifier, classes, "--confusion", classes.parent / "c.png")
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_fifo_given_by_name_is_skipped_with_a_reason(classes, classifier, bounded_python):
    fifo = classes / "x.jpg"
    os.mkfifo(fifo)
    result = cli(bounded_python, "predict", classifier, fifo, classes / "ants" / "ants.png")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ants.png" in result.stdout and "not a regular file" in result.stderr


def test_the_scan_reports_a_fifo_without_opening_it(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    assert "not a regular file" in image_io.check_image(fifo)  # would block forever in open()


# --- endless and huge files (14.4) --------------------------------------------------------------


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_link_to_an_endless_device_is_refused_in_bounded_memory(tmp_path, bounded_python, device):
    link = tmp_path / "photo.jpg"
    os.symlink(device, link)
    assert folders.image_files(tmp_path) == []  # never listed from a folder
    result = bounded_python.run("from tlkit.augment import image_io\n", f"""
        try:
            image_io.load_img({str(link)!r})
            print("LOADED")
        except image_io.ImageLoadError as e:
            print("REFUSED", e)
        """, headroom_mb=300, timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("REFUSED") and "not a regular file" in result.stdout


def test_a_file_larger_than_any_picture_is_refused_before_reading(tmp_path, bounded_python):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:  # sparse: takes no disk, reads as gigabytes of zeros
        f.truncate(image_io.MAX_FILE_BYTES + 1)
    result = bounded_python.run("from tlkit.augment import image_io\n", f"""
        print(image_io.check_image({str(big)!r}))
        try:
            image_io.load_img({str(big)!r})
        except image_io.ImageLoadError as e:
            print("REFUSED", e)
        """, headroom_mb=300, timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = result.stdout.strip().splitlines()
    assert "larger than any picture" in first and second.startswith("REFUSED") and "larger than any picture" in second


def test_a_file_like_object_is_read_within_the_bound(monkeypatch):
    monkeypatch.setattr(image_io, "MAX_FILE_BYTES", 1000)

    class Endless:  # a stream that never ends, like /dev/zero behind a file object
        def read(self, n=-1):
            assert n >= 0, "an unbounded read would never return"
            return b"\0" * n

    stream = Endless()
    with pytest.raises(image_io.ImageLoadError, match="larger than any picture"):
        image_io._read_bounded(stream, "stream")


# --- link loops (14.5) --------------------------------------------------------------------------


def _links_to_the_data_folder(data):
    os.symlink(".", data / "loop1", target_is_directory=True)
    os.symlink(".", data / "loop2", target_is_directory=True)
    os.symlink("..", data / "ants" / "up", target_is_directory=True)
    os.symlink(data / "bees", data / "zz_bees_again", target_is_directory=True)


def test_links_back_into_the_data_folder_are_no_class_and_no_hang(classes, bounded_python):
    _links_to_the_data_folder(classes)
    result = bounded_python.run("import warnings\nwarnings.simplefilter('ignore')\n"
                                "from tlkit.apps.dataset import find_layout\n"
                                "from tlkit.apps.inference import collect_images\n"
                                "from tlkit.augment import ImageDataGenerator\n", f"""
        import json, os
        layout = find_layout({str(classes)!r})
        it = ImageDataGenerator().flow_from_directory({str(classes)!r}, target_size=(8, 8), verbose=0,
                                                      follow_links=True)
        listed = collect_images([{str(classes)!r}])
        print(json.dumps({{"classes": layout["classes"], "iterator_classes": sorted(it.class_indices),
                          "samples": it.samples, "predict": sorted(os.path.basename(p) for p in listed)}}))
        """, headroom_mb=None, timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout)
    assert got["classes"] == got["iterator_classes"] == ["ants", "bees", "wasps"]
    assert got["samples"] == 3
    assert got["predict"] == ["ants.png", "bees.png", "wasps.png"]  # each image once


def test_left_out_class_links_are_named_in_a_warning(classes):
    _links_to_the_data_folder(classes)
    with pytest.warns(UserWarning, match="loop1.*loop2.*zz_bees_again"):
        assert folders.subfolders(classes) == ["ants", "bees", "wasps"]


def test_a_class_folder_linked_from_elsewhere_is_still_a_class(tmp_path, classes):
    picture(tmp_path / "elsewhere" / "moths" / "m.png")
    os.symlink(tmp_path / "elsewhere" / "moths", classes / "moths", target_is_directory=True)
    assert folders.subfolders(classes) == ["ants", "bees", "moths", "wasps"]
    assert len(folders.image_files(classes / "moths")) == 1


def test_predict_on_overlapping_paths_lists_each_picture_once(classes):
    from tlkit.apps.inference import collect_images

    listed = collect_images([classes, classes / "ants", classes])
    assert sorted(os.path.basename(p) for p in listed) == ["ants.png", "bees.png", "wasps.png"]


def test_without_follow_links_linked_folders_are_not_walked(tmp_path):
    picture(tmp_path / "real" / "a.png")
    os.symlink(tmp_path / "real", tmp_path / "data", target_is_directory=True)
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "root" / "linked", target_is_directory=True)
    picture(tmp_path / "root" / "own.png")
    assert [os.path.basename(p) for p in folders.image_files(tmp_path / "root", follow_links=False)] == ["own.png"]
    assert len(folders.image_files(tmp_path / "root", follow_links=True)) == 2
    assert len(folders.image_files(tmp_path / "data", follow_links=False)) == 1  # the starting folder itself
