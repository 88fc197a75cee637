"""Metrics against direct numpy computations (AUC: trapezoids over the thresholds' confusion counts)."""
import json

import numpy as np
import pytest

from tlkit.engine import losses, metrics


@pytest.fixture
def batches(rng):
    def batch(n=30, c=4):
        labels = rng.integers(0, c, n)
        bin_prob, multi_prob = rng.uniform(0, 1, (n, 1)), rng.uniform(0, 1, (n, 3))
        bin_prob[:3, 0] = [0.0, 0.5, 1.0]  # scores exactly on thresholds: positive only when strictly above
        multi_prob[0] = [0.5, 0.3, 0.8]
        return {"labels": labels, "onehot": np.eye(c)[labels], "probs": rng.dirichlet(np.ones(c), n),
                "bin_true": rng.integers(0, 2, (n, 1)).astype(float), "bin_prob": bin_prob,
                "multi_true": rng.integers(0, 2, (n, 3)).astype(float), "multi_prob": multi_prob,
                "sw": rng.uniform(0, 2, n)}
    return [batch(), batch()]


def _feed(metric, batches, y_key, p_key, weighted=False):
    metric.reset_state()
    for b in batches:
        metric.update_state(b[y_key], b[p_key], sample_weight=b["sw"] if weighted else None)
    return metric.result()


def _stack(batches, key):
    return np.concatenate([b[key] for b in batches])


def _weighted_mean(values, batches, weighted):
    weights = _stack(batches, "sw") if weighted else np.ones(len(values))
    return np.sum(values * weights) / np.sum(weights)


# ----- Mean -----
def test_mean_of_scalars_weighted_by_batch_size_and_of_arrays():
    m = metrics.Mean(name="loss")
    m.update_state(0.5, sample_weight=32)
    m.update_state(0.25, sample_weight=16)
    assert m.result() == pytest.approx((0.5 * 32 + 0.25 * 16) / 48)
    m.reset_state()
    assert m.result() == 0.0
    m.update_state(np.array([[1.0, 3.0], [5.0, 7.0]]), sample_weight=np.array([1.0, 3.0]))
    assert m.result() == pytest.approx((2.0 * 1 + 6.0 * 3) / 4)  # rows averaged, then weighted per sample
    m.update_state(np.array([1.0, 2.0]))
    assert m.result() == pytest.approx((2.0 + 18.0 + 3.0) / 6)
    assert m.name == "loss"


# ----- accuracies -----
@pytest.mark.parametrize("weighted", [False, True])
def test_accuracy_family(batches, weighted):
    labels, probs, bin_true, bin_prob = (_stack(batches, k) for k in ("labels", "probs", "bin_true", "bin_prob"))
    expected = {
        "categorical": probs.argmax(-1) == labels,
        "binary": (bin_prob[:, 0] > 0.5) == bin_true[:, 0],
        "binary_0.7": (bin_prob[:, 0] > 0.7) == bin_true[:, 0],
        "top2": (probs > np.take_along_axis(probs, labels[:, None], -1)).sum(-1) < 2,
    }
    cases = [
        ("categorical", metrics.CategoricalAccuracy(), "onehot", "probs"),
        ("categorical", metrics.SparseCategoricalAccuracy(), "labels", "probs"),
        ("binary", metrics.BinaryAccuracy(), "bin_true", "bin_prob"),
        ("binary_0.7", metrics.BinaryAccuracy(threshold=0.7), "bin_true", "bin_prob"),
        ("top2", metrics.TopKCategoricalAccuracy(k=2), "onehot", "probs"),
        ("top2", metrics.SparseTopKCategoricalAccuracy(k=2), "labels", "probs"),
    ]
    for key, metric, y_key, p_key in cases:
        assert _feed(metric, batches, y_key, p_key, weighted) == pytest.approx(
            _weighted_mean(expected[key], batches, weighted)), metric.name


def test_sparse_accuracy_accepts_column_labels_and_exact_accuracy_compares_values():
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert metrics.SparseCategoricalAccuracy()(np.array([[1], [1], [1]]), probs) == pytest.approx(2 / 3)
    assert metrics.Accuracy()([1, 2, 3, 4], [1, 2, 0, 4]) == pytest.approx(0.75)


def test_top_k_counts_ties_at_the_kth_score_as_inside():
    # Target score 0.3 ties with the 2nd largest: inside the top 2 (TensorFlow's in_top_k rule).
    assert metrics.sparse_top_k_categorical_accuracy([2], [[0.4, 0.3, 0.3]], k=2)[0] == 1.0
    assert metrics.sparse_top_k_categorical_accuracy([2], [[0.4, 0.35, 0.3]], k=2)[0] == 0.0
    assert metrics.sparse_top_k_categorical_accuracy([0], [[0.1, 0.5]], k=5)[0] == 1.0


# ----- precision / recall -----
def _counts(is_true, scores, thresholds, weights):
    tp = np.array([np.sum(weights * (is_true & (scores > t))) for t in thresholds])
    fp = np.array([np.sum(weights * (~is_true & (scores > t))) for t in thresholds])
    fn = np.array([np.sum(weights * (is_true & ~(scores > t))) for t in thresholds])
    tn = np.array([np.sum(weights * (~is_true & ~(scores > t))) for t in thresholds])
    return tp, fp, tn, fn


@pytest.mark.parametrize("weighted", [False, True])
def test_precision_and_recall_at_thresholds(batches, weighted):
    is_true = _stack(batches, "multi_true").astype(bool).ravel()
    scores = _stack(batches, "multi_prob").ravel()
    weights = np.repeat(_stack(batches, "sw"), 3) if weighted else np.ones(len(scores))
    thresholds = [0.3, 0.5, 0.8]
    tp, fp, _, fn = _counts(is_true, scores, thresholds, weights)
    precision = _feed(metrics.Precision(thresholds=thresholds), batches, "multi_true", "multi_prob", weighted)
    recall = _feed(metrics.Recall(thresholds=thresholds), batches, "multi_true", "multi_prob", weighted)
    np.testing.assert_allclose(precision, tp / (tp + fp), rtol=1e-6)
    np.testing.assert_allclose(recall, tp / (tp + fn), rtol=1e-6)
    default = _feed(metrics.Precision(), batches, "multi_true", "multi_prob", weighted)
    tp, fp, _, _ = _counts(is_true, scores, [0.5], weights)
    assert isinstance(default, float) and default == pytest.approx(float(tp[0] / (tp[0] + fp[0])))


def test_precision_recall_top_k_and_class_id(batches):
    labels, probs = _stack(batches, "labels"), _stack(batches, "probs")
    top1 = probs.argmax(-1)
    precision = _feed(metrics.Precision(top_k=1, class_id=2), batches, "onehot", "probs")
    recall = _feed(metrics.Recall(top_k=1, class_id=2), batches, "onehot", "probs")
    assert precision == pytest.approx(np.sum((top1 == 2) & (labels == 2)) / np.sum(top1 == 2))
    assert recall == pytest.approx(np.sum((top1 == 2) & (labels == 2)) / np.sum(labels == 2))
    top2 = np.argsort(-probs, axis=-1)[:, :2]
    hits = np.sum(top2 == labels[:, None])
    assert _feed(metrics.Precision(top_k=2), batches, "onehot", "probs") == pytest.approx(hits / (2 * len(labels)))


def test_precision_is_zero_without_positive_predictions():
    assert metrics.Precision()([1, 0], [0.1, 0.2]) == 0.0


# ----- AUC -----
def _keras_thresholds(n):
    return [-1e-7] + [(i + 1) / (n - 1) for i in range(n - 2)] + [1 + 1e-7]


def _trapezoid_auc(tp, fp, tn, fn, curve):
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
    if curve == "ROC":
        x, y = np.divide(fp, fp + tn, out=np.zeros_like(fp), where=fp + tn > 0), recall
    else:
        x, y = recall, np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    return float(np.sum((x[:-1] - x[1:]) * (y[:-1] + y[1:]) / 2))


def _interpolated_pr_auc(tp, fp, fn):
    """Davis & Goadrich: between adjacent thresholds tp grows linearly with the predicted positives P."""
    area = 0.0
    for i in range(len(tp) - 1):
        d_tp, p_hi, p_lo = tp[i] - tp[i + 1], tp[i] + fp[i], tp[i + 1] + fp[i + 1]
        if p_hi - p_lo <= 0 or tp[i + 1] + fn[i + 1] <= 0:
            continue
        slope = d_tp / (p_hi - p_lo)
        intercept = tp[i + 1] - slope * p_lo
        log_ratio = np.log(p_hi / p_lo) if p_hi > 0 and p_lo > 0 else 0.0
        area += slope * (d_tp + intercept * log_ratio) / (tp[i + 1] + fn[i + 1])
    return area


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("num_thresholds", [200, 7])
def test_auc_roc_and_pr_match_direct_computation(batches, weighted, num_thresholds):
    is_true = _stack(batches, "bin_true").astype(bool).ravel()
    scores = _stack(batches, "bin_prob").ravel()
    weights = _stack(batches, "sw") if weighted else np.ones(len(scores))
    counts = _counts(is_true, scores, _keras_thresholds(num_thresholds), weights)
    roc = _feed(metrics.AUC(num_thresholds=num_thresholds), batches, "bin_true", "bin_prob", weighted)
    assert roc == pytest.approx(_trapezoid_auc(*counts, "ROC"), abs=1e-6)
    pr = _feed(metrics.AUC(num_thresholds=num_thresholds, curve="PR"), batches, "bin_true", "bin_prob", weighted)
    assert pr == pytest.approx(_interpolated_pr_auc(counts[0], counts[1], counts[3]), abs=1e-6)
    pr_trapezoid = _feed(metrics.AUC(num_thresholds=num_thresholds, curve="PR", summation_method="majoring"),
                         batches, "bin_true", "bin_prob", weighted)
    tp, fp, tn, fn = counts
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    recall = tp / (tp + fn)
    assert pr_trapezoid == pytest.approx(np.sum((recall[:-1] - recall[1:]) * np.maximum(precision[:-1], precision[1:])))


def test_auc_approaches_the_exact_rank_statistic(rng):
    is_true = rng.integers(0, 2, 500).astype(bool)
    scores = np.clip(rng.normal(0.4 + 0.2 * is_true, 0.2), 0, 1)
    exact = np.mean(scores[is_true][:, None] > scores[~is_true][None, :])  # Mann-Whitney
    assert metrics.AUC(num_thresholds=1000)(is_true, scores) == pytest.approx(exact, abs=5e-3)


def test_auc_custom_thresholds_from_logits_and_multi_label(batches):
    is_true = _stack(batches, "bin_true").astype(bool).ravel()
    scores = _stack(batches, "bin_prob").ravel()
    inner = [0.1, 0.35, 0.5, 0.9]
    auc = _feed(metrics.AUC(thresholds=inner), batches, "bin_true", "bin_prob")
    thresholds = [-1e-7] + inner + [1 + 1e-7]
    assert auc == pytest.approx(_trapezoid_auc(*_counts(is_true, scores, thresholds, 1.0), "ROC"), abs=1e-6)

    with np.errstate(divide="ignore"):
        logits = np.log(scores / (1 - scores))  # includes -inf and +inf for the scores 0 and 1
    from_logits = metrics.AUC(from_logits=True)
    from_logits.update_state(is_true, logits)
    assert from_logits.result() == pytest.approx(metrics.AUC()(is_true, scores), abs=1e-6)

    multi_true, multi_prob = _stack(batches, "multi_true"), _stack(batches, "multi_prob")
    per_label = [metrics.AUC()(multi_true[:, j], multi_prob[:, j]) for j in range(3)]
    assert _feed(metrics.AUC(multi_label=True), batches, "multi_true", "multi_prob") == pytest.approx(
        np.mean(per_label), abs=1e-9)
    weighted = metrics.AUC(multi_label=True, label_weights=[1.0, 2.0, 0.5])
    assert _feed(weighted, batches, "multi_true", "multi_prob") == pytest.approx(
        np.average(per_label, weights=[1.0, 2.0, 0.5]), abs=1e-9)


def test_auc_rejects_unknown_options():
    with pytest.raises(ValueError, match="curve"):
        metrics.AUC(curve="PRGAIN")
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="rank 2"):
        metrics.AUC(multi_label=True).update_state(np.zeros(3), np.zeros(3))


def test_regression_metrics(batches):
    t, p = _stack(batches, "multi_true"), _stack(batches, "multi_prob")
    assert _feed(metrics.MeanSquaredError(), batches, "multi_true", "multi_prob") == pytest.approx(np.mean((t - p) ** 2))
    assert _feed(metrics.get("mae"), batches, "multi_true", "multi_prob") == pytest.approx(np.mean(np.abs(t - p)))


# ----- lookup -----
def test_get_by_keras_names_and_aliases():
    for name, cls, metric_name in (("AUC", metrics.AUC, "auc"), ("auc", metrics.AUC, "auc"),
                                   ("mse", metrics.MeanSquaredError, "mean_squared_error"),
                                   ("accuracy", metrics.Accuracy, "accuracy"), ("acc", metrics.Accuracy, "accuracy"),
                                   ("Precision", metrics.Precision, "precision"), ("recall", metrics.Recall, "recall"),
                                   ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy,
                                    "sparse_top_k_categorical_accuracy")):
        metric = metrics.get(name)
        assert type(metric) is cls and metric.name == metric_name
    crossentropy = metrics.get("binary_crossentropy")
    assert crossentropy([[1.0], [0.0]], [[0.9], [0.2]]) == pytest.approx(
        float(np.mean(losses.binary_crossentropy([[1.0], [0.0]], [[0.9], [0.2]]))))
    custom = metrics.get(lambda t, p: np.abs(np.asarray(t) - p).max(axis=-1))
    assert custom([[0.0, 1.0]], [[0.5, 0.0]]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="Unknown metric"):
        metrics.get("f7_score")


@pytest.mark.parametrize("metric", [
    metrics.AUC(num_thresholds=50, curve="PR", multi_label=True, label_weights=[1, 2], thresholds=None),
    metrics.AUC(thresholds=[0.2, 0.6]), metrics.Precision(thresholds=[0.2, 0.7], class_id=1),
    metrics.Recall(top_k=3), metrics.BinaryAccuracy(threshold=0.3), metrics.SparseTopKCategoricalAccuracy(k=3),
    metrics.MeanSquaredError(), metrics.Mean(name="loss"),
], ids=lambda m: type(m).__name__)
def test_serialize_round_trip(metric):
    config = json.loads(json.dumps(metrics.serialize(metric)))
    clone = metrics.deserialize(config)
    assert type(clone) is type(metric) and clone.get_config() == metric.get_config()


@pytest.mark.parametrize("y_true_shape,y_pred_shape,expected", [
    ((8, 1), (8, 1), metrics.BinaryAccuracy),
    ((8,), (8, 1), metrics.BinaryAccuracy),
    ((8,), (8, 5), metrics.SparseCategoricalAccuracy),
    ((8, 1), (8, 5), metrics.SparseCategoricalAccuracy),
    ((8, 5), (8, 5), metrics.CategoricalAccuracy),
])
@pytest.mark.parametrize("identifier", ["accuracy", "acc", "Accuracy"])
def test_resolve_accuracy_from_shapes_like_keras(y_true_shape, y_pred_shape, expected, identifier):
    metric = metrics.resolve_accuracy(identifier, losses.MeanSquaredError(), y_true_shape, y_pred_shape)
    assert type(metric) is expected and metric.name == identifier


def test_resolve_accuracy_falls_back_to_the_loss_and_names_other_metrics():
    assert type(metrics.resolve_accuracy("acc", losses.BinaryCrossentropy())) is metrics.BinaryAccuracy
    assert type(metrics.resolve_accuracy("acc", losses.get("sparse_categorical_crossentropy"))) is \
        metrics.SparseCategoricalAccuracy
    assert type(metrics.resolve_accuracy("acc", losses.CategoricalCrossentropy())) is metrics.CategoricalAccuracy
    mse = metrics.resolve_accuracy("mse", None, (4, 1), (4, 1))
    assert type(mse) is metrics.MeanSquaredError and mse.name == "mse"
