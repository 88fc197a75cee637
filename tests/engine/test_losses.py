"""Losses: values against plain numpy formulas (and Keras's documented examples), gradients by finite differences."""
import json

import numpy as np
import pytest

from tlkit.engine import losses

EPS = 1e-7


# ----- plain numpy references (Keras's formulas) -----
def ref_cce(y, p, label_smoothing=0.0, from_logits=False, axis=-1):
    y = y * (1 - label_smoothing) + label_smoothing / y.shape[axis]
    if from_logits:
        z = p - p.max(axis=axis, keepdims=True)
        log_q = z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
    else:
        log_q = np.log(np.clip(p / p.sum(axis=axis, keepdims=True), EPS, 1 - EPS))
    return -(y * log_q).sum(axis=axis)


def ref_bce(y, p, label_smoothing=0.0, from_logits=False):
    y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        p = 1 / (1 + np.exp(-p))
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=-1)


def ref_huber(y, p, delta):
    e = np.abs(p - y)
    return np.where(e <= delta, 0.5 * e**2, delta * e - 0.5 * delta**2).mean(axis=-1)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numeric_grad(f, x, h=1e-6):
    """Central differences of the scalar f at float64 x."""
    x = x.astype(np.float64).copy()
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        keep = x[i]
        x[i] = keep + h
        up = f(x)
        x[i] = keep - h
        down = f(x)
        x[i] = keep
        grad[i] = (up - down) / (2 * h)
    return grad


@pytest.fixture
def data(rng):
    n, c = 6, 4
    labels = rng.integers(0, c, n)
    return {
        "labels": labels,
        "onehot": np.eye(c)[labels],
        "probs": rng.dirichlet(np.ones(c) * 2, size=n),
        "logits": rng.standard_normal((n, c)) * 2,
        "bin_true": rng.integers(0, 2, (n, 3)).astype(float),
        "bin_prob": rng.uniform(0.05, 0.95, (n, 3)),
        "target": rng.standard_normal((n, 3)),
        "pred": rng.standard_normal((n, 3)) * 2,
        "sw": rng.uniform(0.1, 2.0, n),
    }


# ----- values -----
def test_keras_documented_examples():
    y_true = np.array([[0, 1, 0], [0, 0, 1]])
    y_pred = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    cce = losses.CategoricalCrossentropy()
    assert cce(y_true, y_pred) == pytest.approx(1.177, abs=1e-3)
    assert cce(y_true, y_pred, sample_weight=np.array([0.3, 0.7])) == pytest.approx(0.814, abs=1e-3)
    assert losses.CategoricalCrossentropy(reduction="sum")(y_true, y_pred) == pytest.approx(2.354, abs=1e-3)
    np.testing.assert_allclose(losses.CategoricalCrossentropy(reduction=None)(y_true, y_pred), [0.0513, 2.303],
                               atol=1e-3)
    assert losses.SparseCategoricalCrossentropy()([1, 2], y_pred) == pytest.approx(1.177, abs=1e-3)
    bce = losses.BinaryCrossentropy(from_logits=True)
    y_true, logits = np.array([[0, 1], [0, 0]]), np.array([[-18.6, 0.51], [2.94, -12.8]])
    assert bce(y_true, logits) == pytest.approx(0.8654, abs=1e-4)
    assert bce(y_true, logits, sample_weight=[0.8, 0.2]) == pytest.approx(0.243, abs=1e-3)
    np.testing.assert_allclose(losses.binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]),
                               [0.916, 0.714], atol=1e-3)
    assert float(np.mean(losses.huber([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]))) == pytest.approx(0.155)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_values(data, smoothing, from_logits):
    pred = data["logits"] if from_logits else data["probs"]
    loss = losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=smoothing)
    per_sample = ref_cce(data["onehot"], pred, smoothing, from_logits)
    assert loss(data["onehot"], pred) == pytest.approx(per_sample.mean(), rel=1e-9)
    np.testing.assert_allclose(losses.categorical_crossentropy(data["onehot"], pred, from_logits, smoothing),
                               per_sample, rtol=1e-6)


def test_categorical_axis_and_unnormalised_probabilities(rng):
    y = np.eye(3)[rng.integers(0, 3, (2, 5))].transpose(0, 2, 1)  # classes on axis 1
    p = rng.uniform(0.1, 2.0, (2, 3, 5))  # not summing to 1: Keras renormalises
    loss = losses.CategoricalCrossentropy(axis=1)
    assert loss(y, p) == pytest.approx(ref_cce(y, p, axis=1).mean(), rel=1e-9)


def test_sparse_matches_categorical_for_both_label_shapes(data):
    expected = ref_cce(data["onehot"], data["probs"]).mean()
    sparse = losses.SparseCategoricalCrossentropy()
    assert sparse(data["labels"], data["probs"]) == pytest.approx(expected, rel=1e-9)
    assert sparse(data["labels"][:, None], data["probs"]) == pytest.approx(expected, rel=1e-9)
    logits = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert logits(data["labels"].astype(float), data["logits"]) == pytest.approx(
        ref_cce(data["onehot"], data["logits"], from_logits=True).mean(), rel=1e-9)


def test_sparse_rejects_bad_labels(data):
    sparse = losses.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError, match="outside"):
        sparse(np.array([0, 1, 2, 3, 4, 0]), data["probs"])
    with pytest.raises(ValueError, match="integer"):
        sparse(np.array([0, 1.5, 2, 3, 1, 0]), data["probs"])
    with pytest.raises(ValueError, match="same shape"):
        sparse(np.array([0, 1]), data["probs"])
    for labels, shown in ((np.array([0, 1, 2, -1, 1, 0]), r"\[-1\]"), (np.array([0, 1, 2, 4, 1, 0], np.uint8), r"\[4\]")):
        with pytest.raises(ValueError, match=shown + " outside"):  # integer ids, shown as integers
            sparse(labels, data["probs"])


def test_sparse_takes_every_integer_label_dtype(data):
    expected = ref_cce(data["onehot"], data["probs"]).mean()
    for dtype in (np.int64, np.int32, np.uint8, np.float32):
        got = losses.SparseCategoricalCrossentropy()(data["labels"].astype(dtype), data["probs"])
        assert got == pytest.approx(expected, rel=1e-9), dtype


def test_fit_rejects_a_bad_label_in_a_later_batch():
    """Labels are checked on every batch of fit, not only the first one."""
    import tlkit

    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 3, 0])  # class 3 of 3 in the second batch of 4
    model = tlkit.Sequential([tlkit.Input((4,)), tlkit.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"class ids \[3\] outside \[0, 3\)"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)


def test_sparse_ignore_class_averages_over_valid_entries_only(data):
    labels = data["labels"].copy()
    labels[:2] = -1
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    per_sample = ref_cce(data["onehot"], data["logits"], from_logits=True)
    assert loss(labels, data["logits"]) == pytest.approx(per_sample[2:].mean(), rel=1e-9)
    _, grad = loss.value_and_grad(labels, data["logits"])
    assert np.all(grad[:2] == 0)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_values(data, smoothing, from_logits):
    pred = data["pred"] if from_logits else data["bin_prob"]
    loss = losses.BinaryCrossentropy(from_logits=from_logits, label_smoothing=smoothing)
    assert loss(data["bin_true"], pred) == pytest.approx(ref_bce(data["bin_true"], pred, smoothing, from_logits).mean(),
                                                         rel=1e-9)


def test_regression_values(data):
    t, p = data["target"], data["pred"]
    assert losses.MeanSquaredError()(t, p) == pytest.approx(np.mean((t - p) ** 2))
    assert losses.MeanAbsoluteError()(t, p) == pytest.approx(np.mean(np.abs(t - p)))
    assert losses.Huber(delta=1.5)(t, p) == pytest.approx(ref_huber(t, p, 1.5).mean())
    column = np.arange(4.0)
    assert losses.MeanSquaredError()(column, column[:, None] + 1) == pytest.approx(1.0)  # (N,) vs (N, 1)


def test_reductions_and_sample_weights(data):
    t, p, sw = data["target"], data["pred"], data["sw"]
    per_sample = np.mean((t - p) ** 2, axis=-1)
    assert losses.MeanSquaredError(reduction="sum")(t, p, sw) == pytest.approx(np.sum(per_sample * sw))
    assert losses.MeanSquaredError()(t, p, sw) == pytest.approx(np.sum(per_sample * sw) / len(sw))
    assert losses.MeanSquaredError()(t, p, sw[:, None]) == pytest.approx(np.sum(per_sample * sw) / len(sw))
    assert losses.MeanSquaredError(reduction="mean_with_sample_weight")(t, p, sw) == pytest.approx(
        np.sum(per_sample * sw) / np.sum(sw))
    np.testing.assert_allclose(losses.MeanSquaredError(reduction="none")(t, p, sw), per_sample * sw, rtol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="average")


# ----- gradients -----
GRAD_CASES = [
    ("cce", losses.CategoricalCrossentropy(), "onehot", "probs"),
    ("cce_smooth", losses.CategoricalCrossentropy(label_smoothing=0.1), "onehot", "probs"),
    ("cce_logits", losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), "onehot", "logits"),
    ("sparse", losses.SparseCategoricalCrossentropy(), "labels", "probs"),
    ("sparse_logits", losses.SparseCategoricalCrossentropy(from_logits=True), "labels", "logits"),
    ("bce", losses.BinaryCrossentropy(label_smoothing=0.2), "bin_true", "bin_prob"),
    ("bce_logits", losses.BinaryCrossentropy(from_logits=True), "bin_true", "pred"),
    ("mse", losses.MeanSquaredError(), "target", "pred"),
    ("mae", losses.MeanAbsoluteError(), "target", "pred"),
    ("huber", losses.Huber(delta=0.7), "target", "pred"),
    ("mse_sum", losses.MeanSquaredError(reduction="sum"), "target", "pred"),
]


@pytest.mark.parametrize("name,loss,y_key,p_key", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_matches_finite_differences(data, name, loss, y_key, p_key, weighted):
    y, p = data[y_key], data[p_key]
    sw = data["sw"] if weighted else None
    value, grad = loss.value_and_grad(y, p, sample_weight=sw)
    assert value == pytest.approx(loss(y, p, sample_weight=sw), rel=1e-12)
    assert grad.dtype == np.float32 and grad.shape == p.shape
    expected = numeric_grad(lambda x: loss(y, x, sample_weight=sw), p)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_saturated_probability_gives_capped_value_and_zero_gradient_like_keras():
    # The true class has probability 0: Keras clips it to 1e-7, so the loss is 16.12 and no gradient flows.
    value, grad = losses.CategoricalCrossentropy().value_and_grad(np.array([[1.0, 0, 0]]), np.array([[0.0, 0.3, 0.7]]))
    assert value == pytest.approx(-np.log(EPS), rel=1e-9)
    np.testing.assert_array_equal(grad, 0.0)
    value, grad = losses.BinaryCrossentropy().value_and_grad(np.array([[1.0]]), np.array([[0.0]]))
    assert value == pytest.approx(-np.log(EPS), rel=1e-6)
    np.testing.assert_array_equal(grad, 0.0)


def test_gradient_through_rank_alignment(rng):
    y = rng.integers(0, 2, 5).astype(float)
    p = rng.uniform(0.1, 0.9, (5, 1))
    sw = rng.uniform(size=5)
    loss = losses.BinaryCrossentropy()
    _, grad = loss.value_and_grad(y, p, sample_weight=sw)  # y_true (N,) is expanded to y_pred's (N, 1)
    assert grad.shape == (5, 1)
    np.testing.assert_allclose(grad, numeric_grad(lambda x: loss(y, x, sample_weight=sw), p), rtol=1e-4)


def test_reduction_none_cannot_be_differentiated(data):
    with pytest.raises(ValueError, match="reduction=None"):
        losses.MeanSquaredError(reduction=None).value_and_grad(data["target"], data["pred"])


# ----- fused activation + loss -----
FUSED = [
    (losses.CategoricalCrossentropy(label_smoothing=0.1), "onehot", "softmax"),
    (losses.SparseCategoricalCrossentropy(), "labels", "softmax"),
    (losses.BinaryCrossentropy(label_smoothing=0.1), "bin_true", "sigmoid"),
]


def _activate(activation, z):
    return softmax(z) if activation == "softmax" else 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("loss,y_key,activation", FUSED, ids=["cce", "sparse", "bce"])
def test_fused_logits_value_and_gradient(data, loss, y_key, activation):
    y = data[y_key]
    z = data["logits"] if activation == "softmax" else data["pred"]
    sw = data["sw"]
    assert loss.supports_logits_fusion(activation)
    value, grad = loss.value_and_grad_logits(y, z, activation, sample_weight=sw)
    # Same value as Keras's probability-space formula while probabilities are moderate.
    assert value == pytest.approx(loss(y, _activate(activation, z), sample_weight=sw), abs=1e-5)
    expected = numeric_grad(lambda x: loss(y, _activate(activation, x), sample_weight=sw), z)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_fused_logits_do_not_saturate_at_extremes():
    y, z = np.array([[1.0, 0.0]]), np.array([[-30.0, 0.0]])
    loss = losses.CategoricalCrossentropy()
    clipped = loss(y, softmax(z))
    fused, grad = loss.value_and_grad_logits(y, z, "softmax")
    assert clipped == pytest.approx(-np.log(EPS), rel=1e-6)  # Keras caps at 16.12 ...
    assert fused == pytest.approx(30.0, rel=1e-9)  # ... the log-softmax path gives the true value
    np.testing.assert_allclose(grad, softmax(z) - y, atol=1e-12)


def test_fusion_support_matrix():
    assert not losses.CategoricalCrossentropy().supports_logits_fusion("sigmoid")
    assert not losses.CategoricalCrossentropy(from_logits=True).supports_logits_fusion("softmax")
    assert not losses.CategoricalCrossentropy(axis=1).supports_logits_fusion("softmax")
    assert not losses.BinaryCrossentropy().supports_logits_fusion("softmax")
    assert not losses.MeanSquaredError().supports_logits_fusion("softmax")
    with pytest.raises(ValueError, match="supports_logits_fusion"):
        losses.MeanSquaredError().value_and_grad_logits(np.zeros((1, 2)), np.zeros((1, 2)), "softmax")


# ----- lookup and serialization -----
def test_get_names_aliases_classes_and_functions():
    assert isinstance(losses.get("categorical_crossentropy"), losses.CategoricalCrossentropy)
    assert isinstance(losses.get("CategoricalCrossentropy"), losses.CategoricalCrossentropy)
    for alias, cls in (("mse", losses.MeanSquaredError), ("MAE", losses.MeanAbsoluteError),
                       ("bce", losses.BinaryCrossentropy), ("huber", losses.Huber),
                       ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy)):
        loss = losses.get(alias)
        assert type(loss) is cls and loss.name == alias
    assert type(losses.get(losses.mean_squared_error)) is losses.MeanSquaredError
    assert type(losses.get(losses.Huber)) is losses.Huber
    instance = losses.BinaryCrossentropy()
    assert losses.get(instance) is instance and losses.get(None) is None
    with pytest.raises(ValueError, match="Unknown loss"):
        losses.get("hinge_of_doom")


def test_custom_callable_evaluates_and_trains(data):
    # Issue 17: numpy maths on y_pred (a Tensor) is differentiated by the tape, so such a loss trains.
    loss = losses.get(lambda t, p: np.abs(t - p).max(axis=-1))
    t, p = data["target"], data["pred"]
    assert loss(t, p) == pytest.approx(np.abs(t - p).max(-1).mean())
    value, grad = loss.value_and_grad(t, p)
    assert value == pytest.approx(np.abs(t - p).max(-1).mean())
    d = (t - p).reshape(-1, np.shape(p)[-1])
    expected = np.zeros_like(d)
    rows = np.arange(len(d))
    expected[rows, np.abs(d).argmax(-1)] = -np.sign(d[rows, np.abs(d).argmax(-1)]) / len(d)
    np.testing.assert_allclose(grad.reshape(expected.shape), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", [
    losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, axis=-1, name="cce"),
    losses.SparseCategoricalCrossentropy(ignore_class=255, reduction="sum"),
    losses.BinaryCrossentropy(label_smoothing=0.2),
    losses.Huber(delta=2.5),
    losses.MeanAbsoluteError(),
], ids=["cce", "sparse", "bce", "huber", "mae"])
def test_serialize_round_trip(loss):
    config = json.loads(json.dumps(losses.serialize(loss)))
    clone = losses.deserialize(config)
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    assert losses.get(config).get_config() == loss.get_config()


def test_functions_serialize_by_name_including_keras_function_form():
    assert losses.serialize(losses.mean_squared_error) == "mean_squared_error"
    assert losses.deserialize("mean_squared_error") is losses.mean_squared_error
    keras_form = {"module": "keras.losses", "class_name": "function", "config": "mean_absolute_error",
                  "registered_name": "mean_absolute_error"}
    assert losses.deserialize(keras_form) is losses.mean_absolute_error
