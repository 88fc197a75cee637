"""ImageDataGenerator's API, NumpyArrayIterator and the threaded prefetch."""
import threading

import numpy as np
import pytest

from tlkit.augment import ImageDataGenerator

AUG = dict(rotation_range=30, width_shift_range=0.2, height_shift_range=0.2, zoom_range=0.2, horizontal_flip=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"data_format": "nchw"}, "data_format"),
    ({"validation_split": 1.5}, "validation_split"),
    ({"zoom_range": [0.5, 1, 2]}, "zoom_range"),
    ({"brightness_range": 0.5}, "brightness_range"),
    ({"fill_mode": "mirror"}, "fill_mode"),
    ({"interpolation_order": 3}, "order"),
])
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageDataGenerator(**kwargs)


def test_random_parameters_follow_keras_sampling():
    gen = ImageDataGenerator(width_shift_range=3, height_shift_range=[-0.25, 0.5], zoom_range=[0.5, 0.6])
    for seed in range(20):
        p = gen.get_random_transform((8, 40, 3), seed)
        assert p["ty"] in (-2, -1, 0, 1, 2)  # int: whole pixels drawn from range(3), either sign
        assert p["tx"] in (-4, -2, 2, 4)  # list of fractions: a choice times the row count, either sign
        assert 0.5 <= p["zx"] <= 0.6 and 0.5 <= p["zy"] <= 0.6 and p["zx"] != p["zy"]
        assert p == gen.get_random_transform((8, 40, 3), seed)


def test_rescale_fused_equals_keras_order(images):
    fused = ImageDataGenerator(rotation_range=20, rescale=1 / 255)
    plain = ImageDataGenerator(rotation_range=20)
    a = fused.transform_batch(images, np.random.RandomState(5))
    b = plain.transform_batch(images, np.random.RandomState(5)) / 255
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_channel_shift_and_brightness_match_numpy(images):
    gen = ImageDataGenerator()
    x = images[0].astype(np.float32)
    got = gen.apply_transform(x, {"channel_shift_intensity": 40.0})
    np.testing.assert_allclose(got, np.clip(x + 40, x.min(), x.max()))
    got = gen.apply_transform(x, {"brightness": 0.5})
    np.testing.assert_allclose(got, np.floor(x * 0.5))  # PIL's 8-bit blend with black truncates


def test_fit_and_standardize_match_numpy(images):
    x = images.astype(np.float32)
    gen = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True, rescale=0.5)
    gen.fit(x)
    mean = (x * 0.5).mean(axis=(0, 1, 2))
    std = (x * 0.5 - mean).std(axis=(0, 1, 2))
    np.testing.assert_allclose(gen.mean.ravel(), mean, rtol=1e-5)
    np.testing.assert_allclose(gen.std.ravel(), std, rtol=1e-5)
    np.testing.assert_allclose(gen.standardize(x[0].copy()), (x[0] * 0.5 - mean) / (std + 1e-6), rtol=1e-4,
                               atol=1e-4)
    batch = gen.flow(x, batch_size=10, shuffle=False)[0]
    np.testing.assert_allclose(batch, (x * 0.5 - mean) / (std + 1e-6), rtol=1e-4, atol=1e-4)


def test_samplewise_and_zca():
    x = np.random.default_rng(1).uniform(0, 1, (20, 4, 4, 1)).astype(np.float32)
    gen = ImageDataGenerator(samplewise_center=True, samplewise_std_normalization=True)
    out = gen.flow(x, batch_size=20, shuffle=False)[0]
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-3)
    with pytest.warns(UserWarning, match="zca_whitening"):
        zca = ImageDataGenerator(zca_whitening=True)
    zca.fit(x)
    centred = (x - x.mean(axis=(0, 1, 2))).reshape(20, -1).astype(np.float64)
    u, s, _ = np.linalg.svd(centred.T, full_matrices=False)
    matrix = (u * (np.sqrt(20) / (s + 1e-6))) @ u.T  # Keras's ZCA formula
    white = zca.flow(x, batch_size=20, shuffle=False)[0].reshape(20, -1)
    np.testing.assert_allclose(white, centred @ matrix, atol=2e-3)


def test_flow_batches_labels_weights_and_order(images):
    y = np.arange(10)
    w = np.linspace(0, 1, 10)
    it = ImageDataGenerator().flow(images, y, batch_size=4, shuffle=False, sample_weight=w)
    assert len(it) == 3
    x0, y0, w0 = it[0]
    assert x0.dtype == np.float32 and np.array_equal(x0, images[:4]) and y0.tolist() == [0, 1, 2, 3]
    assert np.allclose(w0, w[:4])
    assert it[2][0].shape[0] == 2
    with pytest.raises(ValueError, match="length"):
        it[3]
    x_only = ImageDataGenerator().flow(images, batch_size=4, shuffle=False)
    assert isinstance(x_only[0], np.ndarray)
    misc = ImageDataGenerator().flow((images, np.arange(10) * 2), y, batch_size=4, shuffle=False)[0]
    assert misc[0][1].tolist() == [0, 2, 4, 6]


def test_shuffle_covers_every_sample_and_reshuffles(images):
    it = ImageDataGenerator().flow(images, np.arange(10), batch_size=3, seed=4, workers=0)
    first = np.concatenate([it[i][1] for i in range(len(it))])
    it.on_epoch_end()
    second = np.concatenate([it[i][1] for i in range(len(it))])
    assert sorted(first) == sorted(second) == list(range(10))
    assert first.tolist() != second.tolist()
    stream = np.concatenate([next(it)[1] for _ in range(2 * len(it))])
    assert sorted(stream[:10]) == sorted(stream[10:]) == list(range(10))
    assert stream[:10].tolist() != stream[10:].tolist()  # next() reshuffles when it wraps, as Keras


@pytest.mark.parametrize("workers", [1, 3])
def test_same_seed_same_batches_whatever_the_workers(images, workers):
    def run(w):
        it = ImageDataGenerator(**AUG).flow(images, np.arange(10), batch_size=3, seed=7, workers=w)
        return [next(it) for _ in range(7)]

    for (xa, ya), (xb, yb) in zip(run(0), run(workers)):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_different_seeds_differ(images):
    a = ImageDataGenerator(**AUG).flow(images, batch_size=10, seed=1)[0]
    b = ImageDataGenerator(**AUG).flow(images, batch_size=10, seed=2)[0]
    assert not np.array_equal(np.sort(a, axis=0), np.sort(b, axis=0))


def test_worker_exception_reaches_caller_with_traceback(images):
    def broken(x):
        raise RuntimeError("bad preprocessing")

    it = ImageDataGenerator(preprocessing_function=broken).flow(images, batch_size=2, workers=2)
    with pytest.raises(RuntimeError, match="bad preprocessing") as info:
        next(it)
    assert any(entry.name == "broken" for entry in info.traceback)


def test_worker_threads_are_daemons_and_stop(images):
    it = ImageDataGenerator().flow(images, batch_size=2, workers=2)
    next(it)
    threads = it._pool.threads
    assert len(threads) == 2 and all(t.daemon and t in threading.enumerate() for t in threads)
    it.close()
    for t in threads:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in threads)


def test_subsets_split_like_keras(images):
    y = np.tile([0, 1], 5)
    gen = ImageDataGenerator(validation_split=0.3)
    val = gen.flow(images, y, batch_size=10, shuffle=False, subset="validation")
    train = gen.flow(images, y, batch_size=10, shuffle=False, subset="training")
    assert val.n == 3 and train.n == 7
    assert np.array_equal(val[0][0], images[:3]) and np.array_equal(train[0][0], images[3:])
    with pytest.raises(ValueError, match="different number of classes"):
        gen.flow(images, np.repeat([0, 1], 5), subset="validation")
    gen.flow(images, np.repeat([0, 1], 5), subset="validation", ignore_class_split=True)


def test_save_to_dir(images, tmp_path):
    it = ImageDataGenerator(**AUG).flow(images, batch_size=4, seed=0, save_to_dir=tmp_path, save_prefix="aug",
                                        workers=0)
    next(it)
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert len(saved) == 4 and all(n.startswith("aug_") and n.endswith(".png") for n in saved)


def test_channels_first(images):
    chw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    a = ImageDataGenerator(**AUG, data_format="channels_first").flow(chw, batch_size=10, seed=3, shuffle=False)[0]
    b = ImageDataGenerator(**AUG).flow(images, batch_size=10, seed=3, shuffle=False)[0]
    np.testing.assert_allclose(a, b.transpose(0, 3, 1, 2), atol=1e-4)
