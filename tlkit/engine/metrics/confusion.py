"""Threshold metrics built on weighted confusion counts: Precision, Recall and AUC, as in Keras.

A prediction is positive at threshold t when ``y_pred > t`` (strictly); a label is positive when non-zero.
For evenly spaced thresholds (AUC's default 200) predictions are bucketed in one pass, exactly as
Keras's optimized path does, instead of comparing with every threshold.

>>> auc = AUC()                                 # ROC, 200 thresholds, trapezoids
>>> auc.update_state([0, 1, 1, 0], [0.1, 0.8, 0.6, 0.7]); auc.result()
>>> Precision(top_k=1, class_id=2)              # precision of class 2 when it is the top prediction
"""
import numpy as np

from tlkit.engine.losses.ranks import squeeze_or_expand_to_same_rank
from tlkit.engine.metrics.metric import Metric

EPSILON = 1e-7
NEG_INF = -1e10


def _check_thresholds(thresholds, default):
    if thresholds is None:
        return [default]
    thresholds = list(np.ravel(thresholds))
    bad = [t for t in thresholds if t is None or t < 0 or t > 1]
    if bad:
        raise ValueError(f"Threshold values must be in [0, 1]. Received: {bad}")
    return thresholds


def _evenly_spaced(thresholds):
    n = len(thresholds)
    return n >= 3 and np.allclose(thresholds, np.arange(n, dtype=np.float32) / (n - 1), atol=EPSILON)


def _filter_top_k(y_pred, k):
    """Keep each row's k largest scores (first index wins ties); the rest become -1e10."""
    top = np.argsort(-y_pred, axis=-1, kind="stable")[..., :k]
    keep = np.zeros(y_pred.shape, bool)
    np.put_along_axis(keep, top, True, axis=-1)
    return np.where(keep, y_pred, np.float32(NEG_INF))


def confusion_counts(y_true, y_pred, thresholds, sample_weight=None, top_k=None, class_id=None, multi_label=False,
                     label_weights=None, evenly_spaced=False):
    """Weighted (tp, fp, tn, fn) per threshold -- shape (T,), or (T, labels) when ``multi_label``."""
    y_true = np.asarray(y_true, np.float32)
    y_pred = np.asarray(y_pred, np.float32)
    y_pred, y_true = squeeze_or_expand_to_same_rank(y_pred, y_true)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true of shape {y_true.shape} does not match y_pred of shape {y_pred.shape}.")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, np.float32)[..., None]
        _, sample_weight = squeeze_or_expand_to_same_rank(y_true, sample_weight, expand_rank_1=False)
    if top_k is not None:
        y_pred = _filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError("When class_id is provided, y_pred must be a 2D array with shape "
                             f"(num_samples, num_classes), found shape: {y_pred.shape}")
        y_true, y_pred = y_true[..., class_id, None], y_pred[..., class_id, None]
    weights = np.ones(y_pred.shape, np.float32) if sample_weight is None else \
        np.broadcast_to(sample_weight, y_pred.shape).astype(np.float32)
    if label_weights is not None:
        weights = weights * np.broadcast_to(np.asarray(label_weights, np.float32), y_pred.shape)
    is_true = y_true != 0
    if not multi_label:
        y_pred, is_true, weights = y_pred.reshape(-1, 1), is_true.reshape(-1, 1), weights.reshape(-1, 1)
    thresholds = np.asarray(thresholds, np.float32)
    true_w = np.where(is_true, weights, 0).astype(np.float64)
    false_w = np.where(is_true, 0, weights).astype(np.float64)
    if evenly_spaced:
        tp, fp = _bucketed_positives(y_pred, true_w, false_w, thresholds)
    else:
        predicted = y_pred[None] > thresholds[:, None, None]  # (T, samples, labels)
        tp = (predicted * true_w).sum(axis=1)
        fp = (predicted * false_w).sum(axis=1)
    tn = false_w.sum(axis=0) - fp
    fn = true_w.sum(axis=0) - tp
    if not multi_label:
        tp, fp, tn, fn = tp[:, 0], fp[:, 0], tn[:, 0], fn[:, 0]
    return tp, fp, tn, fn


def _bucketed_positives(y_pred, true_w, false_w, thresholds):
    """Keras's segment-sum path: score p falls in bucket ceil(p (T - 1)) - 1, counted for every threshold below."""
    num = len(thresholds)
    bucket = np.ceil(np.clip(y_pred, 0.0, 1.0) * np.float32(num - 1)) - 1
    if thresholds[0] < 0 or thresholds[-1] > 1:
        bucket = np.maximum(bucket, 0)  # thresholds padded by epsilon: every score beats the first one
    bucket = bucket.astype(np.intp)
    labels = y_pred.shape[1]
    counted = bucket >= 0  # a score of 0 beats no threshold >= 0
    flat = (bucket + num * np.arange(labels))[counted]
    tp = np.bincount(flat, true_w[counted], minlength=num * labels).reshape(labels, num).T
    fp = np.bincount(flat, false_w[counted], minlength=num * labels).reshape(labels, num).T
    # Positive at threshold j = score in bucket j or above.
    return np.cumsum(tp[::-1], axis=0)[::-1], np.cumsum(fp[::-1], axis=0)[::-1]


def _ratio(a, b):
    """a / b, 0 where b == 0 (Keras's divide_no_nan)."""
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


class _ThresholdCounts(Metric):
    """Precision / Recall: counts per threshold, result a float for one threshold, else an array."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        self.thresholds = _check_thresholds(thresholds, 0.5 if top_k is None else NEG_INF)
        self._evenly = _evenly_spaced(self.thresholds)
        self.reset_state()

    def reset_state(self):
        self.true_positives = np.zeros(len(self.thresholds))
        self.false_positives = np.zeros(len(self.thresholds))
        self.false_negatives = np.zeros(len(self.thresholds))

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, fp, _, fn = confusion_counts(y_true, y_pred, self.thresholds, sample_weight, self.top_k, self.class_id,
                                         evenly_spaced=self._evenly)
        self.true_positives += tp
        self.false_positives += fp
        self.false_negatives += fn

    def _finish(self, result):
        return float(result[0]) if len(self.thresholds) == 1 else result

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_ThresholdCounts):
    """tp / (tp + fp) over the epoch, at each threshold (default 0.5; with ``top_k``: "in the top k")."""

    def result(self):
        return self._finish(_ratio(self.true_positives, self.true_positives + self.false_positives))


class Recall(_ThresholdCounts):
    """tp / (tp + fn) over the epoch, at each threshold (default 0.5; with ``top_k``: "in the top k")."""

    def result(self):
        return self._finish(_ratio(self.true_positives, self.true_positives + self.false_negatives))


class AUC(Metric):
    """Area under the ROC or PR curve from confusion counts at ``num_thresholds`` thresholds.

    Thresholds: -1e-7, 1/(n-1), ..., (n-2)/(n-1), 1 + 1e-7 (or ``thresholds`` plus those two ends).
    summation_method: 'interpolation' (trapezoids; for PR the Davis & Goadrich interpolation),
    'minoring' or 'majoring' (left/right Riemann sums). ``multi_label``: one curve per column, averaged
    (weighted by ``label_weights``); otherwise all entries form one binary problem.
    """

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None, dtype=None,
                 thresholds=None, multi_label=False, num_labels=None, label_weights=None, from_logits=False):
        super().__init__(name=name, dtype=dtype)
        if str(curve).upper() not in ("ROC", "PR"):
            raise ValueError(f'Invalid AUC curve value: "{curve}". Expected values are ["PR", "ROC"] '
                             "(tlkit does not implement PRGAIN).")
        if str(summation_method).lower() not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f'Invalid AUC summation method value: "{summation_method}". Expected values are '
                             '["interpolation", "majoring", "minoring"]')
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(_check_thresholds(thresholds, None))
            self.num_thresholds = len(inner) + 2
            self._evenly = _evenly_spaced(np.array([0.0] + inner + [1.0]))
        else:
            if num_thresholds <= 1:
                raise ValueError(f"Argument `num_thresholds` must be an integer > 1. Received: {num_thresholds}")
            self.num_thresholds = num_thresholds
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._evenly = True
        self._thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON])
        self.curve = str(curve).upper()
        self.summation_method = str(summation_method).lower()
        self.multi_label = multi_label
        self.num_labels = num_labels
        self._num_labels = num_labels  # known from the first batch when not given
        if num_labels and not multi_label:
            raise ValueError("`num_labels` is needed only when `multi_label` is True.")
        self.label_weights = None if label_weights is None else np.asarray(label_weights, np.float64)
        self._from_logits = from_logits
        self.reset_state()

    @property
    def thresholds(self):
        return list(self._thresholds)

    def reset_state(self):
        shape = (self.num_thresholds, self._num_labels) if self.multi_label and self._num_labels else \
            (self.num_thresholds,)
        self.true_positives, self.false_positives = np.zeros(shape), np.zeros(shape)
        self.true_negatives, self.false_negatives = np.zeros(shape), np.zeros(shape)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred, np.float64)
        if self.multi_label:
            if y_pred.ndim != 2:
                raise ValueError(f"`y_pred` must have rank 2 when `multi_label=True`. Found rank {y_pred.ndim}. "
                                 f"Full shape received for `y_pred`: {y_pred.shape}")
            if self.true_positives.ndim == 1:  # the number of labels is known from the first batch
                self._num_labels = y_pred.shape[1]
                self.reset_state()
        if self._from_logits:
            y_pred = 0.5 * (1.0 + np.tanh(0.5 * y_pred))  # sigmoid, overflow-free
        counts = confusion_counts(y_true, y_pred, self._thresholds, sample_weight, multi_label=self.multi_label,
                                  label_weights=None if self.multi_label else self.label_weights,
                                  evenly_spaced=self._evenly)
        for total, batch in zip((self.true_positives, self.false_positives, self.true_negatives,
                                 self.false_negatives), counts):
            total += batch

    def _average_labels(self, by_label):
        if not self.multi_label:
            return float(by_label)
        if self.label_weights is None:
            return float(np.mean(by_label))
        total = self.label_weights.sum()
        return float((by_label * self.label_weights).sum() / total) if total else 0.0

    def _interpolated_pr_auc(self):
        """Davis & Goadrich (2006): precision interpolated along recall between adjacent thresholds."""
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _ratio(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both_positive = (p[:-1] > 0) & (p[1:] > 0)
        p_ratio = np.where(both_positive, _ratio(p[:-1], np.maximum(p[1:], 0)), 1.0)
        increments = _ratio(slope * (dtp + intercept * np.log(p_ratio)), np.maximum(tp[1:] + fn[1:], 0))
        return self._average_labels(increments.sum(axis=0))

    def result(self):
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolated_pr_auc()
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        recall = _ratio(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _ratio(fp, fp + tn), recall
        else:
            x, y = recall, _ratio(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return self._average_labels(((x[:-1] - x[1:]) * heights).sum(axis=0))

    def get_config(self):
        config = {
            **super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
            "summation_method": self.summation_method, "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
            "from_logits": self._from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = [float(t) for t in self._thresholds[1:-1]]
        return config
