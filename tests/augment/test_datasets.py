"""image_dataset_from_directory, timeseries_dataset_from_array, pad_sequences: Keras's semantics."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import tlkit
from tlkit import layers
from tlkit.augment import image_dataset_from_directory
from tlkit.utils import pad_sequences, timeseries_dataset_from_array



@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    sizes = {"cats": [(20, 30), (16, 16), (31, 17)], "dogs": [(24, 24), (10, 40), (40, 10), (12, 18)]}
    for name, shapes in sizes.items():
        (tmp_path / name).mkdir()
        for k, (h, w) in enumerate(shapes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / name / f"{k}.png")
    (tmp_path / "dogs" / "notes.txt").write_text("not a picture")
    (tmp_path / "loose.png").write_bytes(b"")  # files beside the class folders are not listed
    return tmp_path


def resize_reference(img, size):
    """TensorFlow's bilinear resize with half-pixel centres, written out in numpy."""
    h, w = img.shape[:2]
    ys = np.clip((np.arange(size[0]) + 0.5) * h / size[0] - 0.5, 0, h - 1)
    xs = np.clip((np.arange(size[1]) + 0.5) * w / size[1] - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    img = img.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_listing_labels_and_pixels(folder):
    ds = image_dataset_from_directory(folder, image_size=(8, 8), batch_size=4, shuffle=False, verbose=False)
    assert ds.class_names == ["cats", "dogs"]
    assert [os.path.relpath(p, folder) for p in ds.file_paths] == [
        "cats/0.png", "cats/1.png", "cats/2.png", "dogs/0.png", "dogs/1.png", "dogs/2.png", "dogs/3.png"]
    assert len(ds) == 2
    x, y = ds[0]
    assert x.shape == (4, 8, 8, 3) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(y, [0, 0, 0, 1])
    for i in range(4):
        want = resize_reference(np.asarray(Image.open(ds.file_paths[i])), (8, 8))
        np.testing.assert_allclose(x[i], want, atol=2e-3)
    cat = image_dataset_from_directory(folder, label_mode="categorical", color_mode="grayscale", batch_size=None,
                                       image_size=(5, 6), shuffle=False, verbose=False)
    x, y = cat[0]
    assert x.shape == (5, 6, 1) and y.tolist() == [1.0, 0.0]
    binary = image_dataset_from_directory(folder, label_mode="binary", shuffle=False, verbose=False, batch_size=7)
    assert binary[0][1].shape == (7, 1)
    with pytest.warns(UserWarning, match="loose.png"):  # labels=None lists the whole tree: the empty file too
        only = image_dataset_from_directory(folder, labels=None, shuffle=False, verbose=False, image_size=(4, 4))
    assert isinstance(only[0], np.ndarray) and len(only.file_paths) == 7


def test_split_subsets_and_seeded_shuffle(folder):
    train, val = image_dataset_from_directory(folder, validation_split=0.3, subset="both", seed=3, verbose=False)
    assert len(train.file_paths) == 5 and len(val.file_paths) == 2
    assert not set(train.file_paths) & set(val.file_paths)
    again = image_dataset_from_directory(folder, validation_split=0.3, subset="training", seed=3, verbose=False)
    assert again.file_paths == train.file_paths
    with pytest.raises(ValueError, match="you must provide a `seed` argument"):
        image_dataset_from_directory(folder, validation_split=0.3, subset="training")
    with pytest.raises(ValueError, match="If `subset` is set, `validation_split` must be set"):
        image_dataset_from_directory(folder, subset="training", seed=1)
    with pytest.raises(ValueError, match="exactly 2 class_names"):
        image_dataset_from_directory(folder, label_mode="binary", class_names=["dogs"])
    with pytest.raises(ValueError, match="did not match the names of the subdirectories"):
        image_dataset_from_directory(folder, class_names=["cats", "birds"])
    ordered = image_dataset_from_directory(folder, class_names=["dogs", "cats"], shuffle=False, verbose=False)
    assert ordered.class_names == ["dogs", "cats"] and ordered[0][1][0] == 0


def test_epochs_reshuffle_and_crop_pad(folder):
    ds = image_dataset_from_directory(folder, batch_size=7, image_size=(6, 6), seed=1, verbose=False)
    first = [y.tolist() for _, y in ds]
    second = [y.tolist() for _, y in ds]
    assert sorted(first[0]) == sorted(second[0]) and len(first) == 1
    crop = image_dataset_from_directory(folder, image_size=(6, 6), crop_to_aspect_ratio=True, shuffle=False,
                                        batch_size=1, verbose=False)
    img = np.asarray(Image.open(crop.file_paths[0]))  # 20 x 30: the centred 20 x 20 window
    np.testing.assert_allclose(crop[0][0][0], resize_reference(img[:, 5:25], (6, 6)), atol=2e-3)
    pad = image_dataset_from_directory(folder, image_size=(6, 12), pad_to_aspect_ratio=True, shuffle=False,
                                       batch_size=1, verbose=False, interpolation="nearest")
    np.testing.assert_array_equal(pad[1][0][0][:, :3], 0)  # 16 x 16 padded to 16 x 32: sides are fill


def test_corrupt_files_are_skipped_and_reported(folder):
    (folder / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.warns(UserWarning, match="Skipped 1 unreadable image file"):
        ds = image_dataset_from_directory(folder, shuffle=False, verbose=False)
    assert len(ds.file_paths) == 7 and ds.skipped[0][0].endswith("broken.png")
    (folder / "nothing").mkdir()
    with pytest.raises(ValueError, match="No images found in directory"):
        image_dataset_from_directory(folder / "nothing", labels=None)


def test_usable_in_fit(folder):
    train, val = image_dataset_from_directory(folder, validation_split=0.3, subset="both", seed=2, batch_size=2,
                                              image_size=(8, 8), verbose=False)
    model = tlkit.Sequential([tlkit.Input((8, 8, 3)), layers.RandomFlip("horizontal"), layers.Rescaling(1 / 255),
                              layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()


def test_pad_sequences():
    seqs = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]
    np.testing.assert_array_equal(pad_sequences(seqs), [[0, 0, 1, 2, 3], [0, 0, 0, 0, 4], [0] * 5, [5, 6, 7, 8, 9]])
    np.testing.assert_array_equal(pad_sequences(seqs, maxlen=2, padding="post", truncating="post", value=-1),
                                  [[1, 2], [4, -1], [-1, -1], [5, 6]])
    with pytest.raises(ValueError, match='Padding type "middle" not understood'):
        pad_sequences(seqs, padding="middle")
    with pytest.raises(ValueError, match="must be a list of iterables"):
        pad_sequences([1, 2])
    assert pad_sequences([[[1, 1], [2, 2]]], maxlen=3, dtype="float32").shape == (1, 3, 2)


def test_timeseries_windows_and_targets():
    data = np.arange(20)
    ds = timeseries_dataset_from_array(data, data * 10, sequence_length=3, sampling_rate=2, sequence_stride=3,
                                       batch_size=2, start_index=2, end_index=18)
    windows = [w for x, _ in ds for w in x.tolist()]
    targets = [t for _, y in ds for t in y.tolist()]
    assert windows == [[s, s + 2, s + 4] for s in range(2, 14, 3)]
    assert targets == [10 * s for s in range(2, 14, 3)]
    shuffled = timeseries_dataset_from_array(data, None, 4, shuffle=True, seed=5, batch_size=None)
    starts = [int(x[0]) for x in shuffled]
    assert sorted(starts) == list(range(17)) and starts != list(range(17))
    with pytest.raises(ValueError, match="`sampling_rate` must be higher than 0"):
        timeseries_dataset_from_array(data, None, 3, sampling_rate=0)


def test_same_as_keras(folder, tmp_path, keras_oracle):
    cases = [
        {"fn": "image_dataset_from_directory", "directory": str(folder),
         "kwargs": {"shuffle": False, "image_size": [8, 8], "batch_size": 7}},
        {"fn": "image_dataset_from_directory", "directory": str(folder),
         "kwargs": {"shuffle": False, "image_size": [6, 6], "batch_size": 7, "crop_to_aspect_ratio": True,
                    "label_mode": "categorical"}},
        {"fn": "image_dataset_from_directory", "directory": str(folder),
         "kwargs": {"seed": 7, "validation_split": 0.3, "subset": "both"}},
        {"fn": "pad_sequences", "sequences": [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]],
         "kwargs": {"maxlen": 3, "truncating": "post"}},
        {"fn": "timeseries", "data": list(range(30)), "targets": list(range(100, 130)),
         "kwargs": {"sequence_length": 4, "sampling_rate": 2, "sequence_stride": 2, "batch_size": 5,
                    "shuffle": False, "start_index": 3, "end_index": 27}},
        {"fn": "timeseries", "data": list(range(30)), "targets": list(range(100, 130)),
         "kwargs": {"sequence_length": 3, "batch_size": 4, "shuffle": True, "seed": 11}},
    ]
    with open(tmp_path / "cases.json", "w") as f:
        json.dump(cases, f)
    keras = keras_oracle("keras_dataset_oracle.py", tmp_path / "cases.json", tmp_path / "out.npz")
    for i, case in enumerate(cases):
        if case["fn"] == "image_dataset_from_directory":
            got = image_dataset_from_directory(case["directory"], verbose=False, **case["kwargs"])
            for k, part in enumerate(got if isinstance(got, list) else [got]):
                assert part.file_paths == keras[f"paths{i}_{k}"].tolist(), case
                assert part.class_names == keras[f"names{i}_{k}"].tolist()
                if f"x{i}_{k}" in keras:
                    x, y = part[0]
                    np.testing.assert_allclose(x, keras[f"x{i}_{k}"], atol=2e-3, err_msg=str(case))
                    np.testing.assert_array_equal(y, keras[f"y{i}_{k}"])
        elif case["fn"] == "pad_sequences":
            np.testing.assert_array_equal(pad_sequences(case["sequences"], **case["kwargs"]), keras[f"p{i}"])
        else:
            ds = timeseries_dataset_from_array(np.asarray(case["data"]), np.asarray(case["targets"]), **case["kwargs"])
            assert f"t{i}_{len(ds) - 1}_x" in keras and f"t{i}_{len(ds)}_x" not in keras
            got = [np.concatenate([b[j] for b in ds]) for j in (0, 1)]
            want = [np.concatenate([keras[f"t{i}_{k}_{j}"] for k in range(len(ds))]) for j in "xy"]
            if case["kwargs"]["shuffle"]:  # Keras adds TensorFlow's buffer shuffle: compare as sets
                got = [a[np.lexsort(got[0].T[::-1])] for a in got]
                want = [a[np.lexsort(want[0].T[::-1])] for a in want]
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
