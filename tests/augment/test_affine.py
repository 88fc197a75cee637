"""The fused affine path against exact answers, a plain numpy reference, scipy and Keras."""
import json
import math

import numpy as np
import pytest

from tlkit.augment import ImageDataGenerator, apply_affine_transform
from tlkit.augment.affine import transform_matrices, warp



def hwc(x, **kw):
    return apply_affine_transform(x, row_axis=0, col_axis=1, channel_axis=2, **kw)


# ----- the documented convention, written out independently -----
def reference_matrix(h, w, theta=0, tx=0, ty=0, shear=0, zx=1, zy=1):
    """Keras: rotation @ shift @ shear @ zoom in (x, y), about (h/2 - .5, w/2 - .5), then axes swapped."""
    t, s = np.deg2rad(theta), np.deg2rad(shear)
    m = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    m = m @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    m = m @ np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    m = m @ np.diag([zx, zy, 1])
    o = np.array([[1, 0, h / 2 - 0.5], [0, 1, w / 2 - 0.5], [0, 0, 1]])
    m = o @ m @ np.linalg.inv(o)
    p = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    return p @ m @ p


def reference_warp_nearest_fill(x, m):
    """Bilinear resampling, 'nearest' fill (coordinates clamped), in plain numpy."""
    h, w, _ = x.shape
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    y = np.clip(m[0, 0] * r + m[0, 1] * c + m[0, 2], 0, h - 1)
    xx = np.clip(m[1, 0] * r + m[1, 1] * c + m[1, 2], 0, w - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(xx).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (y - y0)[..., None], (xx - x0)[..., None]
    top = x[y0, x0] * (1 - fx) + x[y0, x1] * fx
    bottom = x[y1, x0] * (1 - fx) + x[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.mark.parametrize("seed", range(6))
def test_matches_numpy_reference_of_keras_convention(seed):
    rng = np.random.default_rng(seed)
    h, w = (11, 11) if seed % 2 else (9, 14)  # non-square too: Keras's centre quirk is reproduced
    x = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    p = dict(theta=rng.uniform(-45, 45), tx=rng.uniform(-3, 3), ty=rng.uniform(-3, 3), shear=rng.uniform(-20, 20),
             zx=rng.uniform(0.7, 1.3), zy=rng.uniform(0.7, 1.3))
    got = hwc(x, **p, fill_mode="nearest")
    want = reference_warp_nearest_fill(x.astype(np.float64), reference_matrix(h, w, **p))
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_flips_are_exact():
    x = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3)).astype(np.uint8)
    gen = ImageDataGenerator()
    assert np.array_equal(gen.apply_transform(x[0], {"flip_horizontal": True}), x[0, :, ::-1])
    assert np.array_equal(gen.apply_transform(x[0], {"flip_vertical": True}), x[0, ::-1])


def test_quarter_turn_of_square_is_exact():
    x = np.random.default_rng(1).uniform(0, 255, (6, 6, 2)).astype(np.float32)
    assert np.array_equal(hwc(x, theta=90), np.rot90(x, 1))
    assert np.array_equal(hwc(x, theta=-90), np.rot90(x, -1))
    assert np.array_equal(hwc(x, theta=180), np.rot90(x, 2))


def test_whole_pixel_shift_is_exact_and_tx_moves_columns():
    x = np.random.default_rng(2).uniform(0, 255, (5, 8, 1)).astype(np.float32)
    got = hwc(x, tx=2, fill_mode="constant", cval=-1)
    assert np.array_equal(got[:, :6], x[:, 2:])  # Keras (tf.keras, Keras 3): tx shifts along columns
    assert np.all(got[:, 6:] == -1)
    got = hwc(x, ty=-1, fill_mode="constant", cval=-1)
    assert np.array_equal(got[1:], x[:-1])
    assert np.all(got[0] == -1)


def test_fill_modes_on_a_ramp():
    row = np.arange(5, dtype=np.float32)  # 0 1 2 3 4
    x = np.repeat(row[None, :, None], 3, axis=0)
    shifted = {mode: hwc(x, tx=-3, fill_mode=mode, cval=9)[1, :, 0] for mode in ("constant", "nearest", "reflect",
                                                                                 "wrap")}
    # output column c reads input column c - 3
    assert shifted["constant"].tolist() == [9, 9, 9, 0, 1]
    assert shifted["nearest"].tolist() == [0, 0, 0, 0, 1]
    assert shifted["reflect"].tolist() == [2, 1, 0, 0, 1]  # scipy's 'reflect': d c b a | a b c d
    assert shifted["wrap"].tolist() == [1, 2, 3, 0, 1]  # scipy's 'wrap' (period n - 1, as Keras saw it)


@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect", "wrap"])
@pytest.mark.parametrize("order", [0, 1])
def test_matches_scipy(mode, order):
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (10, 13, 3)).astype(np.uint8)
    for _ in range(5):
        t = rng.uniform(-3, 3)
        a = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) * rng.uniform(0.5, 2)
        off = rng.uniform(-15, 15, 2)
        got = warp(x[None], np.hstack([a, off[:, None]])[None], mode, 5.0, order)[0]
        want = np.stack([ndimage.affine_transform(x[..., c].astype(float), a, off, order=order, mode=mode, cval=5.0)
                         for c in range(3)], -1)
        np.testing.assert_allclose(got, want, atol=1e-3)


def test_uint8_input_and_float_output_agree():
    x = np.random.default_rng(4).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    m = np.array([[[0.9, 0.2, 1.0], [-0.2, 0.9, 2.0]]] * 3)
    a = warp(x, m)
    b = warp(x.astype(np.float64), m, parallel=True)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_axis_errors_are_keras_errors():
    x = np.zeros((4, 4, 3))
    with pytest.raises(ValueError, match="distinct"):
        apply_affine_transform(x, theta=3, row_axis=0, col_axis=0, channel_axis=2)
    with pytest.raises(ValueError, match="multi-channel 2D"):
        apply_affine_transform(np.zeros((4, 4)), theta=3, row_axis=0, col_axis=1, channel_axis=2)
    with pytest.raises(ValueError, match="fill_mode"):
        hwc(x, theta=3, fill_mode="mirror")


def test_same_picture_and_parameters_as_keras(tmp_path, keras_oracle):
    """Keras 3's legacy ImageDataGenerator (tf.keras's convention), run in the peers' Python."""
    rng = np.random.default_rng(0)
    cases, arrays = [], {}
    transforms = [
        ((9, 13, 3), {"fill_mode": "nearest"},
         {"theta": 25, "tx": 2, "ty": -3, "shear": 10, "zx": 0.8, "zy": 1.2, "flip_horizontal": True}),
        ((12, 12, 1), {"fill_mode": "reflect"}, {"theta": -40, "tx": 1.5, "zx": 1.3, "zy": 0.9}),
        ((10, 7, 3), {"fill_mode": "wrap"}, {"theta": 70, "ty": 2.5, "flip_vertical": True}),
        ((10, 7, 4), {"fill_mode": "constant", "cval": 3.0}, {"theta": 15, "shear": -20,
                                                              "channel_shift_intensity": 20.0}),
        ((8, 8, 3), {}, {"theta": 10, "brightness": 1.3}),
        ((8, 8, 3), {"interpolation_order": 0}, {"theta": 33, "zx": 0.7, "zy": 0.7}),
        ((3, 9, 11), {"data_format": "channels_first"}, {"theta": 20, "tx": 2, "flip_horizontal": True}),
    ]
    for i, (shape, gen, params) in enumerate(transforms):
        arrays[f"x{i}"] = rng.integers(0, 256, shape).astype(np.float32)
        cases.append({"generator": gen, "params": params})
    samplers = [({"rotation_range": 30, "width_shift_range": 0.2, "height_shift_range": [-3, 5], "zoom_range": 0.2,
                  "horizontal_flip": True, "brightness_range": [0.5, 1.5], "channel_shift_range": 10}, 3),
                ({"width_shift_range": 4, "height_shift_range": 2.5, "shear_range": 5, "zoom_range": [0.5, 1.0],
                  "vertical_flip": True}, 11)]
    for gen, seed in samplers:
        arrays[f"x{len(cases)}"] = np.zeros((20, 30, 3), np.float32)
        cases.append({"generator": gen, "seed": seed})
    np.savez(tmp_path / "cases.npz", cases=json.dumps(cases), **arrays)
    keras = keras_oracle("keras_oracle.py", tmp_path / "cases.npz", tmp_path / "out.npz")
    for i, case in enumerate(cases):
        gen = ImageDataGenerator(**case["generator"])
        if "params" in case:
            np.testing.assert_allclose(gen.apply_transform(arrays[f"x{i}"], case["params"]), keras[f"y{i}"],
                                       atol=1e-3, err_msg=str(case))
        else:
            ours = gen.get_random_transform(arrays[f"x{i}"].shape, case["seed"])
            theirs = json.loads(str(keras[f"p{i}"]))
            for k, v in theirs.items():
                assert (ours[k] is None) == (v is None), k
                if v is not None:
                    assert float(ours[k]) == pytest.approx(v), k


# ----- the fast paths: batch sampling and matrices, fixed-point interior, specialised borders -----
SAMPLERS = [
    dict(rotation_range=30, width_shift_range=0.2, height_shift_range=0.2, zoom_range=0.2, horizontal_flip=True),
    dict(rotation_range=10, width_shift_range=4.0, height_shift_range=0.3, shear_range=5, zoom_range=[0.5, 1.0],
         vertical_flip=True, channel_shift_range=10, brightness_range=[0.5, 1.5]),
    dict(width_shift_range=3, height_shift_range=[-0.25, 0.5], zoom_range=[0.5, 0.6], horizontal_flip=True),
    dict(),
    dict(width_shift_range=True, zoom_range=[1, 1], data_format="channels_first"),
]


@pytest.mark.parametrize("config", SAMPLERS)
def test_batch_sampling_draws_what_image_by_image_sampling_draws(config):
    gen = ImageDataGenerator(**config)
    shape = (3, 20, 30) if config.get("data_format") == "channels_first" else (20, 30, 3)
    batch_rs, image_rs = np.random.RandomState(7), np.random.RandomState(7)
    batch = gen._sample_batch(batch_rs, shape, 9)
    for i in range(9):
        for key, value in gen._sample(image_rs, shape).items():
            if value is None:
                assert np.isnan(batch[key][i]), key
            else:
                assert batch[key][i] == value, key  # bit for bit: same seed, same Keras parameters
    assert batch_rs.random_sample() == image_rs.random_sample()  # and the stream continues in step


def test_transform_matrices_equal_the_per_image_matrices():
    rng = np.random.default_rng(8)
    n, h, w = 40, 9, 14
    p = dict(theta=rng.uniform(-180, 180, n), tx=rng.uniform(-5, 5, n), ty=rng.uniform(-5, 5, n),
             shear=rng.uniform(-30, 30, n), zx=rng.uniform(0.5, 2, n), zy=rng.uniform(0.5, 2, n))
    flips = dict(flip_horizontal=rng.random(n) < 0.5, flip_vertical=rng.random(n) < 0.5)
    got = transform_matrices(h, w, **p, **flips)
    for i in range(n):
        m = reference_matrix(h, w, **{k: v[i] for k, v in p.items()})
        if flips["flip_horizontal"][i]:
            m = m @ np.array([[1, 0, 0], [0, -1, w - 1], [0, 0, 1]])
        if flips["flip_vertical"][i]:
            m = m @ np.array([[-1, 0, h - 1], [0, 1, 0], [0, 0, 1]])
        np.testing.assert_allclose(got[i], m[:2], atol=1e-12)
    right_angles = transform_matrices(h, h, theta=np.array([90.0, 180, -90]), tx=2, flip_horizontal=True)
    assert np.array_equal(right_angles, np.rint(right_angles))  # snapped: whole pixels stay exact


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_channels_and_source_dtypes_match_numpy_reference(channels, dtype):
    rng = np.random.default_rng(channels)
    x = (rng.random((2, 13, 17, channels)) * 255).astype(dtype)
    m = np.array([reference_matrix(13, 17, theta=25, tx=2, zx=0.8, zy=1.3)[:2],
                  reference_matrix(13, 17, theta=-70, ty=-3, shear=15)[:2]])
    got = warp(x[:, ::-1][:, ::-1], m, "nearest", scale=[2.0, 0.5], offset=[1.0, -1.0])  # strided source too
    for i, (s, o) in enumerate([(2.0, 1.0), (0.5, -1.0)]):
        want = reference_warp_nearest_fill(x[i].astype(np.float64), m[i]) * s + o
        np.testing.assert_allclose(got[i], want, atol=2e-3 * max(s, 1))


def test_long_rows_stay_accurate():
    """The interior runs in fixed point, re-anchored every few thousand columns: no drift along long rows."""
    x = np.random.default_rng(9).uniform(0, 255, (3, 6000, 1)).astype(np.float32)
    m = np.array([[0.0, 1e-4, 0.3], [0.0, 0.61, 0.7]])  # a slight slope, so columns land between pixels
    got = warp(x[None], m[None], "constant", cval=-1)[0]
    want = reference_warp_nearest_fill(x.astype(np.float64), m)
    inside = (np.arange(6000) * 0.61 + 0.7) <= 5999
    np.testing.assert_allclose(got[:, inside], want[:, inside], atol=2e-3)
    assert np.all(got[:, ~inside] == -1)


@pytest.mark.parametrize("m", [
    [[0.0, 1e-4, 0.3], [0.0, 0.61, -2000.7]],  # ~3300 columns left of the image: the fixed-point edge loop
    [[0.0, 1e-4, -1.3], [0.0, 0.41, -2000.7]],  # all above it, one span of 6000 columns: the float fallback
    [[0.0, 0.0, 1.5], [0.0, 1e6, 9e8]],  # positions past fixed point's range: the float fallback
])
def test_nearest_fill_clamps_positions_outside_the_image(m):
    x = np.random.default_rng(11).uniform(0, 255, (3, 6000, 2)).astype(np.float32)
    got = warp(x[None], np.array([m]), "nearest")[0]
    np.testing.assert_allclose(got, reference_warp_nearest_fill(x.astype(np.float64), np.array(m)), atol=2e-3)


@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect", "wrap"])
@pytest.mark.parametrize("order", [0, 1])
def test_serial_and_parallel_kernels_agree(mode, order):
    rng = np.random.default_rng(10)
    x = rng.integers(0, 256, (5, 11, 9, 3)).astype(np.uint8)
    m = np.stack([reference_matrix(11, 9, theta=t, tx=1.5, zx=z, zy=z)[:2]
                  for t, z in zip(rng.uniform(-60, 60, 5), rng.uniform(0.6, 1.4, 5))])
    serial = warp(x, m, mode, 7.0, order)
    parallel = warp(x, m, mode, 7.0, order, parallel=True)
    assert np.array_equal(serial, parallel)
