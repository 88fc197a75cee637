"""A LocalCluster of 2 worker processes (1 thread each), tiny models saved to model files, tiny images."""
import time

import numpy as np
import pytest
from PIL import Image

IMAGE_SIZE = 16


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
            distributed.Client(lc) as client:
        client.wait_for_workers(2)
        yield client


def save_model(path, feature_maps):
    """A few conv layers on 16x16 pictures: feature maps (N, 4, 4, 6), or class probabilities (N, 3)."""
    from tlkit import layers as L
    from tlkit.models import Model

    inp = L.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = L.Conv2D(4, 3, activation="relu", padding="same")(inp)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(6, 3, activation="relu", padding="same")(x)
    x = L.MaxPooling2D(2)(x)
    if not feature_maps:
        x = L.GlobalAveragePooling2D()(x)
        x = L.Dense(3, activation="softmax")(x)
    model = Model(inp, x)
    meta = {"image_size": IMAGE_SIZE, "preprocessing": "caffe"}
    if not feature_maps:
        meta["classes"] = ["ants", "bees", "wasps"]
    model.save(str(path), metadata=meta)
    return str(path)


@pytest.fixture
def feature_model(tmp_path):
    return save_model(tmp_path / "features_model.h5", feature_maps=True)


@pytest.fixture
def classifier(tmp_path):
    return save_model(tmp_path / "classifier.h5", feature_maps=False)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """DATA/{ants,bees,wasps}/*.png (varied sizes) and one corrupt picture, DATA/bees/broken.jpg."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["ants", "bees", "wasps"]):
        (root / name).mkdir()
        for i in range(9):
            h, w = rng.integers(12, 40, size=2)
            pixels = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
            pixels[..., c] = np.clip(pixels[..., c].astype(int) + 80, 0, 255)  # each class a tint
            Image.fromarray(pixels).save(root / name / f"{name}_{i:02d}.png")
    (root / "bees" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture
def wait_for():
    """wait_for(predicate, what): until the program reports what the test waits for (bounded, never a
    fixed sleep standing in for it)."""
    def wait(predicate, what, timeout=180):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            time.sleep(0.05)

    return wait
