"""MeanAbsolutePercentageError, MeanSquaredLogarithmicError, CosineSimilarity, LogCosh, Poisson and
KLDivergence: Keras 3's formulas (epsilon 1e-7), per-sample over the last axis, with their gradients.

>>> MeanAbsolutePercentageError()(y_true, y_pred)    # 100 * mean(|y_true - y_pred| / max(|y_true|, eps))
>>> log_cosh(y_true, y_pred)                         # per-sample values
"""
import numpy as np

from tlkit.engine.losses.loss import Loss, as_float
from tlkit.engine.losses.regression import aligned

EPSILON = 1e-7  # Keras's backend.epsilon()


def _mape(y_true, y_pred, need_grad):
    y, p = aligned(y_true, y_pred)
    scale = np.maximum(np.abs(y), EPSILON)
    values = 100.0 * np.mean(np.abs(y - p) / scale, axis=-1)
    return values, (100.0 / p.shape[-1]) * np.sign(p - y) / scale if need_grad else None


def _msle(y_true, y_pred, need_grad):
    y, p = aligned(y_true, y_pred)
    diff = np.log(np.maximum(p, EPSILON) + 1.0) - np.log(np.maximum(y, EPSILON) + 1.0)
    values = np.mean(np.square(diff), axis=-1)
    grad = (2.0 / p.shape[-1]) * diff * (p > EPSILON) / (np.maximum(p, EPSILON) + 1.0) if need_grad else None
    return values, grad


def _cosine(y_true, y_pred, axis, need_grad):
    """-sum(normalize(y_true) * normalize(y_pred)), normalize(x) = x / sqrt(max(sum x^2, eps)) as Keras's ops."""
    y, p = aligned(y_true, y_pred)
    yn = y / np.sqrt(np.maximum(np.sum(y * y, axis=axis, keepdims=True), EPSILON))
    sq = np.sum(p * p, axis=axis, keepdims=True)
    inv = 1.0 / np.sqrt(np.maximum(sq, EPSILON))
    pn = p * inv
    values = -np.sum(yn * pn, axis=axis)
    if not need_grad:
        return values, None
    dot = np.sum(yn * p, axis=axis, keepdims=True)
    # d/dp of -(yn . p) * inv, where inv depends on p only while sum p^2 > eps
    grad = -(yn * inv - dot * inv ** 3 * p * (sq > EPSILON))
    return values, grad


def _log_cosh(y_true, y_pred, need_grad):
    y, p = aligned(y_true, y_pred)
    x = p - y
    values = np.mean(x + np.logaddexp(0.0, -2.0 * x) - np.log(2.0), axis=-1)
    return values, np.tanh(x) / x.shape[-1] if need_grad else None


def _poisson(y_true, y_pred, need_grad):
    y, p = as_float(y_true), as_float(y_pred)
    values = np.mean(p - y * np.log(p + EPSILON), axis=-1)
    return values, (1.0 - y / (p + EPSILON)) / p.shape[-1] if need_grad else None


def _kl(y_true, y_pred, need_grad):
    y = np.clip(as_float(y_true), EPSILON, 1.0)
    raw = as_float(y_pred)
    p = np.clip(raw, EPSILON, 1.0)
    values = np.sum(y * np.log(y / p), axis=-1)
    return values, -y / p * ((raw >= EPSILON) & (raw <= 1.0)) if need_grad else None


def mean_absolute_percentage_error(y_true, y_pred):
    return _mape(y_true, y_pred, False)[0].astype(np.float32)


def mean_squared_logarithmic_error(y_true, y_pred):
    return _msle(y_true, y_pred, False)[0].astype(np.float32)


def cosine_similarity(y_true, y_pred, axis=-1):
    """The loss's per-sample values: minus the cosine similarity (-1 for identical directions)."""
    return _cosine(y_true, y_pred, axis, False)[0].astype(np.float32)


def log_cosh(y_true, y_pred):
    return _log_cosh(y_true, y_pred, False)[0].astype(np.float32)


def poisson(y_true, y_pred):
    return _poisson(y_true, y_pred, False)[0].astype(np.float32)


def kl_divergence(y_true, y_pred):
    return _kl(y_true, y_pred, False)[0].astype(np.float32)


class FunctionLoss(Loss):
    """A loss whose per-sample values and gradient come from one ``_fn(y_true, y_pred, need_grad)``."""

    _fn = None
    default_name = None

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name or self.default_name, reduction=reduction, dtype=dtype)

    def call_with_grad(self, y_true, y_pred, need_grad=True):
        return type(self)._fn(y_true, y_pred, need_grad)


class MeanAbsolutePercentageError(FunctionLoss):
    _fn, default_name = staticmethod(_mape), "mean_absolute_percentage_error"


class MeanSquaredLogarithmicError(FunctionLoss):
    _fn, default_name = staticmethod(_msle), "mean_squared_logarithmic_error"


class LogCosh(FunctionLoss):
    _fn, default_name = staticmethod(_log_cosh), "log_cosh"


class Poisson(FunctionLoss):
    _fn, default_name = staticmethod(_poisson), "poisson"


class KLDivergence(FunctionLoss):
    _fn, default_name = staticmethod(_kl), "kl_divergence"


class CosineSimilarity(Loss):
    """``CosineSimilarity(axis=-1)``: minus the cosine similarity, so minimizing aligns the directions."""

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.axis = int(axis)
        self._reduced_axis = self.axis

    def call_with_grad(self, y_true, y_pred, need_grad=True):
        return _cosine(y_true, y_pred, self.axis, need_grad)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
