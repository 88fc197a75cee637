"""Regression losses: mean squared error, mean absolute error, Huber -- each averaged over the last axis.

>>> MeanSquaredError()(y_true, y_pred)          # mean(square(y_true - y_pred), axis=-1), then batch mean
>>> Huber(delta=1.0)(y_true, y_pred)
"""
import numpy as np

from tlkit.engine.losses.loss import Loss, as_float
from tlkit.engine.losses.ranks import squeeze_or_expand_to_same_rank


def aligned(y_true, y_pred):
    """(y_true, y_pred) as float64 after Keras's rank alignment (y_true (N,) vs y_pred (N, 1) and the like)."""
    y, p = squeeze_or_expand_to_same_rank(as_float(y_true), as_float(y_pred))
    if y.shape != p.shape:
        raise ValueError(f"y_true of shape {np.shape(y_true)} does not match y_pred of shape {np.shape(y_pred)}.")
    return y, p


def _error(y_true, y_pred):
    """y_pred - y_true after Keras's rank alignment."""
    y, p = aligned(y_true, y_pred)
    return p - y


def _mse(error, need_grad):
    return np.mean(np.square(error), axis=-1), (2.0 / error.shape[-1]) * error if need_grad else None


def _mae(error, need_grad):
    return np.mean(np.abs(error), axis=-1), np.sign(error) / error.shape[-1] if need_grad else None


def _huber(error, delta, need_grad):
    abs_error = np.abs(error)
    quadratic = abs_error <= delta
    values = np.mean(np.where(quadratic, 0.5 * np.square(error), delta * abs_error - 0.5 * delta**2), axis=-1)
    grad = np.where(quadratic, error, delta * np.sign(error)) / error.shape[-1] if need_grad else None
    return values, grad


def mean_squared_error(y_true, y_pred):
    """Per-sample ``mean(square(y_true - y_pred), axis=-1)``."""
    return _mse(_error(y_true, y_pred), False)[0].astype(np.float32)


def mean_absolute_error(y_true, y_pred):
    """Per-sample ``mean(abs(y_true - y_pred), axis=-1)``."""
    return _mae(_error(y_true, y_pred), False)[0].astype(np.float32)


def huber(y_true, y_pred, delta=1.0):
    """Per-sample mean over the last axis of 0.5 e^2 (|e| <= delta) or delta (|e| - delta / 2)."""
    return _huber(_error(y_true, y_pred), delta, False)[0].astype(np.float32)


class MeanSquaredError(Loss):
    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call_with_grad(self, y_true, y_pred, need_grad=True):
        return _mse(_error(y_true, y_pred), need_grad)


class MeanAbsoluteError(Loss):
    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call_with_grad(self, y_true, y_pred, need_grad=True):
        return _mae(_error(y_true, y_pred), need_grad)


class Huber(Loss):
    """Quadratic for errors up to ``delta``, linear beyond."""

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta = float(delta)

    def call_with_grad(self, y_true, y_pred, need_grad=True):
        return _huber(_error(y_true, y_pred), self.delta, need_grad)

    def get_config(self):
        # Keras 3 leaves delta out of Huber's config (so it is lost on reload); tlkit keeps it.
        return {**super().get_config(), "delta": self.delta}
