"""RandAugment, TrivialAugmentWide, AugMix, CutMix: torchvision's documented semantics, checked against
numpy references written from torchvision's formulas and against Pillow (the colour ops of torchvision's
PIL path); torch's grid_sample as an optional oracle of the geometry."""
import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

import tlkit
from tlkit import augment as A
from tlkit import layers
from tlkit.augment import policy_ops
from tlkit.augment.policies import apply_plans


@pytest.fixture
def photo():
    """A smooth picture with texture (closer to a photo than noise), uint8 (2, 20, 24, 3)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:20, 0:24]
    base = np.stack([yy * 9 + xx * 3, 200 - xx * 6, 60 + (yy * xx) % 90], -1)
    return np.clip(base[None] + rng.integers(-25, 25, (2, 20, 24, 3)), 0, 255).astype(np.uint8)


# ----- geometry: torchvision's inverse affine matrix, written out, and a nearest sampler -----
def tv_inverse(center, angle, translate, shear):
    """torchvision's _get_inverse_affine_matrix (scale 1), from its documented formula."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    (cx, cy), (tx, ty) = center, translate
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy
    return np.array(m).reshape(2, 3)


def tv_op(name, magnitude, h, w):
    """The inverse matrix torchvision's _apply_op uses, on coordinates centred on the picture."""
    corner = [-0.5 * w, -0.5 * h]  # center=[0, 0] in pixels, as F.affine converts it for tensors
    if name == "ShearX":
        return tv_inverse(corner, 0.0, [0, 0], [math.degrees(math.atan(magnitude)), 0.0])
    if name == "ShearY":
        return tv_inverse(corner, 0.0, [0, 0], [0.0, math.degrees(math.atan(magnitude))])
    if name == "TranslateX":
        return tv_inverse([0, 0], 0.0, [int(magnitude), 0], [0.0, 0.0])
    if name == "TranslateY":
        return tv_inverse([0, 0], 0.0, [0, int(magnitude)], [0.0, 0.0])
    return tv_inverse([0, 0], -magnitude, [0, 0], [0.0, 0.0])  # F.rotate negates the angle


def as_pixel_matrix(tv, h, w):
    """A centred (x, y) inverse matrix -> 3x3 output (row, col) -> source (row, col)."""
    to_centred = np.array([[0, 1, 0.5 - w / 2], [1, 0, 0.5 - h / 2], [0, 0, 1.0]])  # (row, col) -> (x, y)
    return np.linalg.inv(to_centred) @ np.vstack([tv, [0, 0, 1]]) @ to_centred


def nearest_reference(img, tv, fill=0.0):
    """grid_sample(nearest, zeros padding) of one (H, W, C) image through a centred inverse matrix."""
    h, w = img.shape[:2]
    rr, cc = np.mgrid[0:h, 0:w]
    x, y = cc + 0.5 - w / 2, rr + 0.5 - h / 2
    sx = tv[0, 0] * x + tv[0, 1] * y + tv[0, 2] + w / 2 - 0.5
    sy = tv[1, 0] * x + tv[1, 1] * y + tv[1, 2] + h / 2 - 0.5
    col, row = np.rint(sx).astype(int), np.rint(sy).astype(int)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    out = np.full(img.shape, fill, np.float64)
    out[inside] = img[row[inside], col[inside]]
    return out


def mismatch(a, b, atol=0.5):
    return float(np.mean(np.any(np.abs(np.asarray(a, np.float64) - b) > atol, axis=-1)))


@pytest.mark.parametrize("name,magnitude", [("ShearX", 0.3), ("ShearY", -0.25), ("TranslateX", 7.9),
                                            ("TranslateY", -5.2), ("Rotate", 30.0), ("Rotate", -135.0)])
def test_each_geometric_op_matches_torchvisions_matrix(photo, name, magnitude):
    h, w = photo.shape[1:3]
    got = apply_plans(photo[:1], [policy_ops.plan_chain([(name, magnitude)], h, w)], order=0)[0]
    want = nearest_reference(photo[0], tv_op(name, magnitude, h, w))
    # only exact half-pixel ties (grid_sample rounds them to even) may go the other way: 5 of 480 at 135 degrees
    assert mismatch(got, want) < 0.02
    assert mismatch(got, photo[0]) > 0.2


def test_a_chain_of_geometric_ops_composes_as_torchvision_applies_them_in_turn():
    h, w = 20, 24
    chain = [("ShearX", 0.2), ("Rotate", 25.0), ("TranslateY", 3.0), ("ShearY", -0.1)]
    _, m, _ = policy_ops.plan_chain(chain, h, w)
    want = np.eye(3)
    for name, mag in chain:  # image_k(p) = image_{k-1}(M_k p): source = M_1 M_2 ... p
        want = want @ as_pixel_matrix(tv_op(name, mag, h, w), h, w)
    np.testing.assert_allclose(m, want, atol=1e-9)


def test_geometry_against_torch_grid_sample(photo):
    torch = pytest.importorskip("torch")
    h, w = photo.shape[1:3]
    for name, mag in [("Rotate", 30.0), ("ShearX", -0.3)]:
        tv = tv_op(name, mag, h, w)
        theta = torch.tensor(tv, dtype=torch.float64)
        theta = theta * torch.tensor([[1, 1, 2 / w], [1, 1, 2 / h]], dtype=torch.float64)  # to grid units
        theta[0, 1] *= h / w
        theta[1, 0] *= w / h
        grid = torch.nn.functional.affine_grid(theta[None], [1, 3, h, w], align_corners=False)
        img = torch.tensor(photo[0], dtype=torch.float64).permute(2, 0, 1)[None]
        want = torch.nn.functional.grid_sample(img, grid, mode="nearest", padding_mode="zeros",
                                               align_corners=False)[0].permute(1, 2, 0).numpy()
        got = apply_plans(photo[:1], [policy_ops.plan_chain([(name, mag)], h, w)], order=0)[0]
        assert mismatch(got, want) < 0.01


# ----- colour ops against Pillow (torchvision's PIL path uses these very functions) -----
@pytest.mark.parametrize("name,magnitude,pil,atol", [
    ("Posterize", 3, lambda im: ImageOps.posterize(im, 3), 0),
    ("Posterize", 0, lambda im: np.zeros(np.asarray(im).shape), 0),  # torchvision: mask -256 (Pillow refuses 0)
    ("Solarize", 128.0, lambda im: ImageOps.solarize(im, 128), 0),
    ("Equalize", 0.0, ImageOps.equalize, 0),
    ("AutoContrast", 0.0, ImageOps.autocontrast, 1),
    ("Brightness", 0.6, lambda im: ImageEnhance.Brightness(im).enhance(1.6), 1),
    ("Color", -0.7, lambda im: ImageEnhance.Color(im).enhance(0.3), 2),
    ("Contrast", 0.8, lambda im: ImageEnhance.Contrast(im).enhance(1.8), 2),
    ("Sharpness", 0.9, lambda im: ImageEnhance.Sharpness(im).enhance(1.9), 2),
])
def test_colour_ops_match_pillow(photo, name, magnitude, pil, atol):
    got = policy_ops.apply_color(name, magnitude, photo[0].astype(np.float32))
    want = np.asarray(pil(Image.fromarray(photo[0])), np.float64)
    inner = (slice(1, -1), slice(1, -1))  # Pillow and torchvision treat the 1-pixel border apart for Sharpness
    np.testing.assert_allclose(got[inner], want[inner], atol=atol + 1e-9)
    assert np.array_equal(got, np.floor(got)) and got.min() >= 0 and got.max() <= 255


def test_colour_op_formulas_by_hand():
    img = np.array([[[10.0, 200.0, 90.0], [255.0, 0.0, 128.0]]])
    gray = np.floor(img @ [0.2989, 0.587, 0.114])[..., None]
    np.testing.assert_array_equal(policy_ops.apply_color("Color", 0.5, img), np.floor(np.clip(1.5 * img - 0.5 * gray,
                                                                                              0, 255)))
    np.testing.assert_array_equal(policy_ops.apply_color("Contrast", -0.5, img), np.floor(0.5 * img + 0.5 * gray.mean()))
    np.testing.assert_array_equal(policy_ops.apply_color("Posterize", 4, img), (img.astype(int) & ~15).astype(float))
    flat = np.full((3, 3, 3), 7.0)
    np.testing.assert_array_equal(policy_ops.apply_color("AutoContrast", 0, flat), flat)  # a flat channel is kept


# ----- sampling: torchvision's tables and draws -----
def test_magnitude_tables_are_torchvisions():
    rand = policy_ops.augmentation_space("rand", 31, 224, 224)
    assert list(rand) == ["Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
                          "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"]
    assert rand["Rotate"][0][9] == pytest.approx(9.0) and rand["TranslateX"][0][30] == pytest.approx(150 / 331 * 224)
    assert list(rand["Posterize"][0][[0, 8, 9, 30]]) == [8, 7, 7, 4]
    wide = policy_ops.augmentation_space("trivial_wide", 31, 224, 224)
    assert wide["Rotate"][0][-1] == 135.0 and wide["Posterize"][0][-1] == 2 and wide["TranslateX"][0][-1] == 32.0
    augmix = policy_ops.augmentation_space("augmix", 10, 90, 60)
    assert len(augmix) == 9 and augmix["TranslateX"][0][-1] == pytest.approx(20.0)
    assert list(augmix["Posterize"][0]) == [4, 4, 3, 3, 2, 2, 1, 1, 0, 0]
    assert len(policy_ops.augmentation_space("augmix_all", 10, 90, 60)) == 13


def test_randaugment_draws_ops_uniformly_at_the_fixed_magnitude_with_random_signs():
    policy = A.RandAugment(num_ops=2, magnitude=9)
    rng = np.random.default_rng(0)
    ops = [op for _ in range(3000) for op in policy.ops(rng, 224, 224)]
    names = [n for n, _ in ops]
    counts = np.array([names.count(n) for n in policy_ops.augmentation_space("rand", 31, 224, 224)])
    assert counts.min() > 6000 / 14 * 0.8 and counts.max() < 6000 / 14 * 1.2
    rotations = np.array([v for n, v in ops if n == "Rotate"])
    assert set(np.round(np.abs(rotations), 6)) == {9.0} and 0.4 < np.mean(rotations > 0) < 0.6
    assert {v for n, v in ops if n == "Posterize"} == {7.0}


def test_trivialaugmentwide_draws_one_op_at_a_uniform_bin():
    rng = np.random.default_rng(1)
    ops = [A.TrivialAugmentWide().ops(rng, 64, 64) for _ in range(4000)]
    assert all(len(o) == 1 for o in ops)
    rotations = np.abs([o[0][1] for o in ops if o[0][0] == "Rotate"])
    bins = np.round(rotations / (135.0 / 30)).astype(int)
    assert bins.min() == 0 and bins.max() == 30 and 0.35 < np.mean(bins < 15) < 0.65


def test_augmix_weights_depths_and_severity():
    policy = A.AugMix(severity=2, mixture_width=4, alpha=1.0)
    rng = np.random.default_rng(2)
    draws = [policy.sample(rng, 40, 40) for _ in range(1500)]
    original = np.array([d[0] for d in draws])
    np.testing.assert_allclose([d[0] + d[1].sum() for d in draws], 1.0, atol=1e-9)
    assert abs(original.mean() - 0.5) < 0.03 and abs(original.var() - 1 / 12) < 0.015  # Beta(1, 1)
    rotations = {abs(v) for d in draws for plan in d[2] for part in (plan[0], plan[2]) for n, v in part if n == "Rotate"}
    assert rotations <= {0.0}  # rotations are geometric: never in the colour lists
    space = policy_ops.augmentation_space("augmix_all", 10, 40, 40)
    rng = np.random.default_rng(3)
    for _ in range(200):
        for name, value in policy_ops.sample_ops(rng, space, 3, lambda r, k: min(int(r.uniform() * 2), 1)):
            if space[name][0] is not None:
                assert abs(value) in {abs(space[name][0][0]), abs(space[name][0][1])}


def test_augmix_mixes_the_chains_as_documented(photo):
    policy = A.AugMix(mixture_width=2, chain_depth=1, interpolation="nearest")
    h, w = photo.shape[1:3]
    draws = [(0.3, np.array([0.5, 0.2]), [policy_ops.plan_chain([("Rotate", 20.0)], h, w),
                                          policy_ops.plan_chain([("Solarize", 100.0)], h, w)])] * 2
    got = policy.apply(photo, draws)
    rotated = nearest_reference(photo[0], tv_op("Rotate", 20.0, h, w))
    solarized = np.where(photo[0] >= 100, 255 - photo[0].astype(float), photo[0])
    want = 0.3 * photo[0] + 0.5 * rotated + 0.2 * solarized
    assert np.mean(np.abs(got[0] - want) > 1e-3) < 0.01


# ----- fused application, order, seeds -----
def test_colour_ops_before_a_geometric_op_run_before_the_warp_and_after_it_otherwise(photo):
    h, w = photo.shape[1:3]
    for chain in ([("Equalize", 0.0), ("Rotate", 40.0)], [("Rotate", 40.0), ("Equalize", 0.0)]):
        got = apply_plans(photo[:1], [policy_ops.plan_chain(chain, h, w)], order=0)[0]
        x = photo[0].astype(np.float64)
        for name, mag in chain:  # torchvision: one op after the other
            x = nearest_reference(x, tv_op(name, mag, h, w)) if name == "Rotate" else policy_ops.apply_color(name, mag, x)
        assert mismatch(got, x) < 0.01


@pytest.mark.parametrize("make", [lambda s: A.RandAugment(), lambda s: A.TrivialAugmentWide(), lambda s: A.AugMix()])
def test_policies_same_seed_same_output(photo, make):
    policy = make(0)
    a, b, c = policy(photo, seed=5), policy(photo, seed=5), policy(photo, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and a.dtype == np.float32


def test_bad_arguments_say_what_to_give():
    with pytest.raises(ValueError, match="magnitude must be a whole number from 0 to 30"):
        A.RandAugment(magnitude=31)
    with pytest.raises(ValueError, match="severity must be a whole number from 1 to 10"):
        A.AugMix(severity=0)
    with pytest.raises(ValueError, match="chain_depth must be -1"):
        A.AugMix(chain_depth=0)
    with pytest.raises(ValueError, match="put it before Rescale"):
        A.Pipeline([A.Rescale(1 / 255), A.RandAugment()])(np.zeros((1, 8, 8, 3), np.uint8), seed=0)
    with pytest.raises(ValueError, match="put them last"):
        A.Pipeline([A.CutMix(num_classes=2), A.RandomFlip()])


# ----- as Pipeline steps -----
def test_pipeline_step_folds_the_policy_into_its_one_warp(photo):
    h, w = photo.shape[1:3]
    policy = A.RandAugment(num_ops=2, magnitude=20)
    plans = [policy.sample(np.random.RandomState(3), h, w) for _ in range(1)]
    rs = np.random.RandomState(3)
    plans = [policy.sample(rs, h, w) for _ in range(2)]
    want = apply_plans(photo, plans, order=0)
    got = A.Pipeline([policy], fill_mode="constant", interpolation_order=0)(photo, seed=3)
    assert mismatch(got[0], want[0]) < 0.01 and mismatch(got[1], want[1]) < 0.01
    scaled = A.Pipeline([policy, A.Rescale(1 / 255)], fill_mode="constant", interpolation_order=0)(photo, seed=3)
    np.testing.assert_allclose(scaled, got / 255, atol=1e-6)


def test_pipeline_with_augmix_and_cutmix_streams_soft_labels(photo):
    x = np.concatenate([photo] * 3)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    pipeline = A.Pipeline([A.RandomFlip(), A.AugMix(), A.Rescale(1 / 255), A.CutMix(1.0)])
    batch_x, batch_y = next(iter(pipeline.flow(x, y, batch_size=6, shuffle=False, seed=0)))
    assert batch_x.shape == x.shape and batch_x.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(batch_y.sum(1), 1.0, atol=1e-6)
    lam = batch_y.max(1)
    assert np.allclose(lam, lam[0]) and 0 < lam[0] <= 1  # one box per batch
    out_x, out_y = pipeline(x, seed=1, labels=np.array([0, 1, 2, 0, 1, 2]).reshape(-1, 1) * 0 + np.eye(3)[[0, 1, 2,
                                                                                                           0, 1, 2]])
    assert out_y.shape == (6, 3)


# ----- CutMix -----
def tv_cutmix_box(rs, h, w, alpha):
    """torchvision's CutMix.make_params, from its documentation and source, on the same draws."""
    lam = rs.beta(alpha, alpha)
    r_x, r_y = int(rs.uniform() * w), int(rs.uniform() * h)
    r = 0.5 * math.sqrt(1.0 - lam)
    rw, rh = int(r * w), int(r * h)
    x1, y1, x2, y2 = max(r_x - rw, 0), max(r_y - rh, 0), min(r_x + rw, w), min(r_y + rh, h)
    return (y1, y2, x1, x2), 1.0 - (x2 - x1) * (y2 - y1) / (w * h)


def test_cutmix_pastes_the_previous_images_box_and_mixes_labels_by_area(photo):
    x = np.concatenate([photo, 255 - photo])  # 4 distinct images
    y = np.eye(4, dtype=np.float32)
    for seed in range(5):
        params = A.mixing.cutmix_params(np.random.RandomState(seed), 4, 20, 24, 1.0)
        assert params == tv_cutmix_box(np.random.RandomState(seed), 20, 24, 1.0)
        (y1, y2, x1, x2), lam = params
        got_x, got_y = A.mixing.cutmix(x, y, params)
        for i in range(4):
            want = x[i].astype(np.float32).copy()
            want[y1:y2, x1:x2] = x[i - 1][y1:y2, x1:x2]
            np.testing.assert_array_equal(got_x[i], want)
            assert got_y[i, i] == pytest.approx(lam) and got_y[i, i - 1] == pytest.approx(1 - lam)
        assert abs(lam - (1 - (y2 - y1) * (x2 - x1) / (20 * 24))) < 1e-12


def test_cutmix_layer_integer_labels_seed_and_channels_first(photo):
    layer = layers.CutMix(seed=4, num_classes=3)
    out = layer({"images": photo, "labels": np.array([0, 2])})
    again = layers.CutMix(seed=4, num_classes=3)({"images": photo, "labels": np.array([0, 2])})
    np.testing.assert_array_equal(out["images"], again["images"])
    np.testing.assert_allclose(out["labels"].sum(1), 1.0, atol=1e-6)
    cf = layers.CutMix(seed=4, data_format="channels_first")(np.moveaxis(photo, -1, 1))
    np.testing.assert_array_equal(np.moveaxis(cf, 1, -1), out["images"])
    with pytest.raises(ValueError, match="CutMix needs one-hot labels"):
        layers.CutMix()({"images": photo, "labels": np.array([0, 1])})
    assert layers.CutMix()(photo, training=False) is photo


def test_soft_labels_from_cutmix_train_through_categorical_crossentropy(photo):
    x = np.concatenate([photo, 255 - photo]).astype(np.float32) / 255
    y = np.eye(2, dtype=np.float32)[[0, 0, 1, 1]]
    mix = layers.CutMix(alpha=1.0, seed=1)

    def batches():
        while True:
            out = mix({"images": x, "labels": y})
            yield out["images"], out["labels"]

    model = tlkit.Sequential([tlkit.Input((20, 24, 3)), layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    soft = next(batches())
    p = model.predict(soft[0], verbose=0)
    want = np.mean(-np.sum(soft[1] * np.log(np.clip(p, 1e-7, 1)), 1))  # the loss on soft targets, by hand
    assert model.evaluate(soft[0], soft[1], verbose=0) == pytest.approx(want, rel=1e-4)
    before = model.evaluate(x, y, verbose=0)
    model.fit(batches(), steps_per_epoch=20, epochs=2, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before


# ----- as layers: fused, seeded, saved -----
def test_layers_fuse_flip_and_policy_into_one_warp(photo, count_warps):
    def stack():
        return [layers.RandomFlip("horizontal", seed=0), layers.RandAugment(num_ops=2, magnitude=15, seed=1)]

    x = np.concatenate([photo] * 4)
    model = tlkit.Sequential([tlkit.Input(photo.shape[1:])] + stack())
    fused = model(x, training=True)
    assert len(count_warps) == 1
    one_by_one = x
    for layer in stack():
        one_by_one = layer(one_by_one, training=True)
    assert np.mean([mismatch(a, b) for a, b in zip(fused, one_by_one)]) < 0.01
    np.testing.assert_array_equal(model(x, training=False), x)


def test_policy_layers_seeded_and_saved(photo, tmp_path):
    for make in (lambda: layers.RandAugment(seed=3), lambda: layers.TrivialAugmentWide(seed=3),
                 lambda: layers.AugMix(severity=2, seed=3)):
        a, b = make()(photo), make()(photo)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, photo)
    model = tlkit.Sequential([tlkit.Input(photo.shape[1:]), layers.RandAugment(num_ops=3, magnitude=5, seed=1),
                              layers.AugMix(mixture_width=2, seed=2), layers.Rescaling(1 / 255)])
    model.save(tmp_path / "m.h5")
    loaded = tlkit.models.load_model(tmp_path / "m.h5")
    assert loaded.layers[0].get_config()["num_ops"] == 3 and loaded.layers[1].get_config()["mixture_width"] == 2
    np.testing.assert_allclose(loaded.predict(photo, verbose=0), photo / 255, atol=1e-6)


def test_value_range_maps_the_pictures_onto_torchvisions_scale(photo):
    for make in (lambda vr: layers.RandAugment(num_ops=3, magnitude=12, value_range=vr, seed=9),
                 lambda vr: layers.AugMix(value_range=vr, seed=9)):
        on_255 = make((0, 255))(photo)
        on_1 = make((0, 1))(photo / 255.0)
        np.testing.assert_allclose(on_1 * 255, on_255, atol=0.05)
        assert make((0, 1)).get_config()["value_range"] == [0.0, 1.0]
    with pytest.raises(ValueError, match="value_range must be"):
        layers.RandAugment(value_range=(1, 0))


def test_random_erasing_as_a_pipeline_step(photo):
    x = photo.astype(np.float32) + 1  # no zeros of its own
    pipeline = A.Pipeline([A.RandomErasing(factor=(1, 1), scale=(0.25, 0.25), fill_value=0.0)])
    out = pipeline(x, seed=2)
    np.testing.assert_array_equal(out, pipeline(x, seed=2))
    for img, src in zip(out, x):
        erased = np.all(img == 0, axis=-1)
        rows, cols = np.flatnonzero(erased.any(1)), np.flatnonzero(erased.any(0))
        assert erased[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # one box
        assert abs(len(rows) - 0.5 * 20) <= 1 and abs(len(cols) - 0.5 * 24) <= 1  # sides sqrt(0.25) of the picture's
        np.testing.assert_array_equal(img[~erased], src[~erased])
    with pytest.raises(ValueError, match="within"):
        A.RandomErasing(factor=(0.5, 2))
