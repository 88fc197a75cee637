"""Pipeline: composable transforms compiled to the one fused pass, on arrays and as an iterator's augmenter."""
import numpy as np
import pytest

from tlkit.augment import Pipeline, RandomBrightness, RandomFlip, RandomRotation, RandomShift, Rescale


def test_pipeline_exact_cases(images):
    flip = Pipeline([RandomFlip("horizontal_and_vertical"), Rescale(2.0, 1.0)])(images, seed=0)
    for got, x in zip(flip, images.astype(np.float32) * 2 + 1):
        assert any(np.array_equal(got, v) for v in (x, x[:, ::-1], x[::-1], x[::-1, ::-1]))
    turn = Pipeline([RandomRotation((90, 90)), RandomRotation((90, 90))])(images)
    assert np.array_equal(turn, images[:, ::-1, ::-1].astype(np.float32))
    shift = Pipeline([RandomShift(width=(2, 2))], fill_mode="constant", cval=-1)(images[0])
    assert np.array_equal(shift[:, 2:], images[0, :, :-2]) and np.all(shift[:, :2] == -1)


def test_pipeline_is_seeded_and_fuses_brightness(images):
    p = Pipeline([RandomRotation(20), RandomBrightness((2, 2))])
    a, b = p(images, seed=3), p(images, seed=3)
    assert np.array_equal(a, b)
    plain = Pipeline([RandomRotation(20), RandomBrightness((1, 1))])(images, seed=3)
    np.testing.assert_allclose(a, plain * 2, rtol=1e-6)


def test_pipeline_flow(images):
    it = Pipeline([RandomFlip()]).flow(images, np.arange(10), batch_size=5, seed=0)
    x, y = next(it)
    assert x.shape == (5, 12, 12, 3) and x.dtype == np.float32 and len(y) == 5
    with pytest.raises(TypeError, match="transform"):
        Pipeline([lambda x: x])
