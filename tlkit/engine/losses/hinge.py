"""Hinge, SquaredHinge and CategoricalHinge (Keras 3's formulas), per sample over the last axis, with
their gradients. Binary labels {0, 1} become {-1, 1} for Hinge and SquaredHinge, as in Keras."""
import numpy as np

from tlkit.engine.losses.loss import as_float
from tlkit.engine.losses.more_regression import FunctionLoss


def _signed_labels(y_true):
    """Keras's convert_binary_labels_to_hinge: all labels in {0, 1} -> 2 y - 1; otherwise unchanged."""
    y = as_float(y_true)
    return 2.0 * y - 1.0 if np.all((y == 0) | (y == 1)) else y


def _hinge(y_true, y_pred, need_grad, squared=False):
    y, p = _signed_labels(y_true), as_float(y_pred)
    margin = np.maximum(1.0 - y * p, 0.0)
    if squared:
        values = np.mean(np.square(margin), axis=-1)
        grad = -2.0 * y * margin / p.shape[-1] if need_grad else None
    else:
        values = np.mean(margin, axis=-1)
        grad = -y * (margin > 0) / p.shape[-1] if need_grad else None
    return values, grad


def _categorical_hinge(y_true, y_pred, need_grad):
    y, p = as_float(y_true), as_float(y_pred)
    pos = np.sum(y * p, axis=-1)
    others = (1.0 - y) * p
    neg = np.max(others, axis=-1)
    values = np.maximum(neg - pos + 1.0, 0.0)
    if not need_grad:
        return values, None
    top = np.zeros_like(p)
    np.put_along_axis(top, np.argmax(others, axis=-1)[..., None], 1.0, axis=-1)
    return values, ((top * (1.0 - y)) - y) * (values > 0)[..., None]


def hinge(y_true, y_pred):
    return _hinge(y_true, y_pred, False)[0].astype(np.float32)


def squared_hinge(y_true, y_pred):
    return _hinge(y_true, y_pred, False, squared=True)[0].astype(np.float32)


def categorical_hinge(y_true, y_pred):
    return _categorical_hinge(y_true, y_pred, False)[0].astype(np.float32)


class Hinge(FunctionLoss):
    _fn, default_name = staticmethod(_hinge), "hinge"


class SquaredHinge(FunctionLoss):
    _fn, default_name = staticmethod(lambda y_true, y_pred, need_grad: _hinge(y_true, y_pred, need_grad, True)), \
        "squared_hinge"


class CategoricalHinge(FunctionLoss):
    _fn, default_name = staticmethod(_categorical_hinge), "categorical_hinge"
