"""LayerAugmenter: `tlkit finetune`'s flags as Keras 3 preprocessing layers behind the folder iterators."""
import numpy as np
import pytest
from PIL import Image

from tlkit.augment import ImageDataGenerator
from tlkit.augment.layers.augmenter import KerasBrightness, KerasShear, LayerAugmenter
from tlkit.augment.layers.base import draws_from
from tlkit.augment.layers.fusion import run_layers
from tlkit.augment.layers.geometric import RandomFlip, RandomRotation, RandomTranslation, RandomZoom
from tlkit.augment.options import generator_arguments


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    return tmp_path


def test_flags_map_onto_keras3_layers():
    aug = LayerAugmenter.from_flags(generator_arguments(rotation=30, shift=0.1, zoom=0.2, shear=5, flip="both",
                                                        brightness="0.8,1.2", fill_mode="reflect"))
    kinds = [type(l) for l in aug.layers]
    assert kinds == [RandomFlip, RandomFlip, RandomRotation, RandomTranslation, KerasShear, RandomZoom, KerasBrightness]
    assert [l.mode for l in aug.layers[:2]] == ["horizontal", "vertical"]  # two independent draws, as the generator
    assert aug.layers[2].factor == pytest.approx((-30 / 360, 30 / 360)) and aug.layers[2].fill_mode == "reflect"
    assert aug.layers[5]._height == (-0.2, 0.2) and aug.layers[5]._width == (-0.2, 0.2)
    assert LayerAugmenter.from_flags({}).layers == []
    with pytest.raises(ValueError, match="channel shifts have no preprocessing layer"):
        LayerAugmenter.from_flags({"channel_shift_range": 10.0})


def test_shear_and_brightness_steps_match_the_generators_maths():
    img = np.random.default_rng(1).integers(0, 255, (1, 16, 16, 3)).astype(np.uint8)
    rng = np.random.default_rng(7)
    angle = np.random.default_rng(7).uniform(-20, 20, 1)[0]
    with draws_from(rng):
        got = run_layers(img, [KerasShear(20, "nearest")], True)
    gen = ImageDataGenerator(fill_mode="nearest")
    want = gen.apply_transform(img[0], {"shear": angle})  # a square picture: Keras's centre is the true centre
    np.testing.assert_allclose(got[0], want, atol=1e-3)
    factor = np.random.default_rng(8).uniform(0.5, 1.5, 1)[0]
    with draws_from(np.random.default_rng(8)):
        got = run_layers(img, [KerasBrightness(0.5, 1.5)], True)
    np.testing.assert_allclose(got[0], gen.apply_transform(img[0].astype(np.float32), {"brightness": factor}), atol=1e-3)


def test_iterator_batches_depend_on_the_seed_only(folder):
    aug = LayerAugmenter.from_flags(generator_arguments(rotation=20, flip="horizontal"), validation_split=0.2)

    def first_batch(seed, workers):
        it = aug.flow_from_directory(folder, target_size=(20, 20), batch_size=8, seed=seed, workers=workers,
                                     subset="training", verbose=0)
        try:
            return next(it)
        finally:
            it.close()

    (x0, y0), (x1, y1), (x2, _) = first_batch(3, 0), first_batch(3, 2), first_batch(4, 0)
    np.testing.assert_array_equal(x0, x1)
    np.testing.assert_array_equal(y0, y1)
    assert x0.dtype == np.float32 and x0.shape == (8, 20, 20, 3) and not np.array_equal(x0, x2)


def test_flips_only_gives_each_picture_or_its_mirror(folder):
    aug = LayerAugmenter.from_flags(generator_arguments(flip="horizontal"))
    plain = ImageDataGenerator().flow_from_directory(folder, target_size=(20, 20), batch_size=10, shuffle=False,
                                                     verbose=0)
    flipped = aug.flow_from_directory(folder, target_size=(20, 20), batch_size=10, shuffle=False, seed=0, verbose=0)
    x, xf = next(plain)[0], next(flipped)[0]
    plain.close(), flipped.close()
    same = [np.array_equal(a, b) for a, b in zip(x, xf)]
    mirrored = [np.array_equal(a[:, ::-1], b) for a, b in zip(x, xf)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(same) and any(mirrored)
