"""Accuracy metrics: per-sample 0/1 matches (functions) averaged over the epoch (classes), as in Keras.

>>> m = CategoricalAccuracy()
>>> m.update_state([[0, 1], [1, 0]], [[0.3, 0.7], [0.4, 0.6]]); m.result()
0.5
>>> sparse_top_k_categorical_accuracy([2, 0], [[0.1, 0.2, 0.7], [0.1, 0.5, 0.4]], k=2)
array([1., 0.], dtype=float32)
"""
import numpy as np

from tlkit.engine.losses.ranks import squeeze_or_expand_to_same_rank
from tlkit.engine.metrics.metric import MeanMetricWrapper


def _matches(a, b):
    return np.equal(a, b).astype(np.float32)


def accuracy(y_true, y_pred):
    """Exact equality of values (for already-decoded predictions)."""
    y_true, y_pred = squeeze_or_expand_to_same_rank(np.asarray(y_true), np.asarray(y_pred))
    return _matches(y_true.astype(y_pred.dtype), y_pred)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1 where ``y_pred > threshold`` agrees with the 0/1 label."""
    y_true, y_pred = squeeze_or_expand_to_same_rank(np.asarray(y_true), np.asarray(y_pred))
    return _matches(y_true, (y_pred > threshold).astype(y_true.dtype))


def _compare_ids(true_ids, y_pred, squeeze_true):
    """argmax(y_pred) == true_ids, shaped like true_ids (Keras squeezes a trailing 1 first, then restores it)."""
    original_shape = true_ids.shape
    if squeeze_true:
        true_ids = true_ids[..., 0]
    matches = _matches(true_ids, np.argmax(y_pred, axis=-1))
    return matches.reshape(original_shape) if squeeze_true else matches


def categorical_accuracy(y_true, y_pred):
    """1 where the arg-max of the one-hot ``y_true`` equals the arg-max of ``y_pred``."""
    y_pred = np.asarray(y_pred)
    true_ids = np.argmax(np.asarray(y_true), axis=-1)
    return _compare_ids(true_ids, y_pred, squeeze_true=true_ids.ndim == y_pred.ndim)


def sparse_categorical_accuracy(y_true, y_pred):
    """1 where the integer label (shape (N,) or (N, 1)) equals the arg-max of ``y_pred``."""
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true)
    matches = _compare_ids(y_true, y_pred, squeeze_true=y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1)
    return matches[..., 0] if matches.ndim > 1 and matches.shape[-1] == 1 else matches


def in_top_k(targets, predictions, k):
    """Whether each target's score is among the k largest of its row (ties at the k-th score count as in)."""
    k = min(k, predictions.shape[-1])
    kth_largest = np.partition(predictions, -k, axis=-1)[:, -k]
    target_scores = np.take_along_axis(predictions, targets.astype(np.intp)[:, None], axis=-1)[:, 0]
    return target_scores >= kth_largest


def _top_k(true_ids, y_pred, k):
    original_shape = true_ids.shape
    predictions = y_pred.reshape(-1, y_pred.shape[-1]) if y_pred.ndim > 2 else y_pred
    matches = in_top_k(true_ids.reshape(-1), predictions, k).astype(np.float32)
    return matches.reshape(original_shape)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1 where the one-hot target's class is among the k highest-scored classes."""
    return _top_k(np.argmax(np.asarray(y_true), axis=-1), np.asarray(y_pred), k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1 where the integer label is among the k highest-scored classes."""
    return _top_k(np.asarray(y_true).astype(np.int64), np.asarray(y_pred), k)


class Accuracy(MeanMetricWrapper):
    def __init__(self, name="accuracy", dtype=None):
        super().__init__(accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


class BinaryAccuracy(MeanMetricWrapper):
    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        super().__init__(binary_accuracy, name=name, dtype=dtype, threshold=threshold)
        self.threshold = threshold

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "threshold": self.threshold}


class CategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


class SparseCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


class TopKCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "k": self.k}


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None):
        super().__init__(sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "k": self.k}
