"""Losses written with tlkit.ops (plain functions, Loss subclasses that define only ``call``) get their
gradient from the tape; built-in losses called on tracked predictions record as one op with their
analytic gradient. Either way a loss is differentiable in a custom training loop and in ``fit``."""
import numpy as np

from tlkit.engine import ops
from tlkit.engine.losses.ranks import squeeze_or_expand_to_same_rank
from tlkit.engine.tape import GradientTape, active_tape
from tlkit.engine.tensor import Tensor


def reduced(loss, y_true, y_pred, sample_weight):
    """Keras's weighting and reduction of ``loss.call`` values, with ops (so the tape sees it)."""
    values = loss.call(y_true, y_pred)
    if not isinstance(values, Tensor):
        values = ops.convert_to_tensor(values)
    if sample_weight is not None:
        values, weights = squeeze_or_expand_to_same_rank(values, np.asarray(sample_weight, np.float64))
        values = ops.multiply(values, weights.astype(values.dtype))
    if loss.reduction in (None, "none") or values.ndim == 0:
        return values
    total = ops.sum(values)
    if loss.reduction == "sum":
        return total
    if loss.reduction == "mean_with_sample_weight" and sample_weight is not None:
        divisor = float(np.broadcast_to(np.asarray(sample_weight, np.float64), values.shape).sum())
    else:
        divisor = values.size
    return ops.divide(total, divisor) if divisor else ops.multiply(total, 0.0)


def value_and_grad(loss, y_true, y_pred, sample_weight=None):
    """(reduced loss as float, d loss / d y_pred as float32), differentiated by the tape."""
    if loss.reduction in (None, "none"):
        raise ValueError("A loss with reduction=None has no single value to differentiate; use "
                         "'sum_over_batch_size' (the default) or 'sum' for training.")
    pred = np.asarray(y_pred).view(Tensor)
    with GradientTape() as tape:
        tape.watch(pred)
        value = reduced(loss, y_true, pred, sample_weight)
    grad = tape.gradient(value, pred)
    grad = np.zeros(pred.shape, np.float32) if grad is None else np.asarray(grad, np.float32)
    return float(value), grad


def recorded_call(loss, y_true, y_pred, sample_weight):
    """``loss(y_true, y_pred)`` inside an active tape that tracks y_pred: a differentiable Tensor."""
    if loss._differentiated_by_ops:
        return reduced(loss, y_true, y_pred, sample_weight)
    value, grad = loss.value_and_grad(y_true, np.asarray(y_pred), sample_weight=sample_weight)
    dtype = np.asarray(y_pred).dtype
    return ops.custom_gradient_op(f"{loss.name}_loss", [y_pred], np.asarray(value, dtype),
                                  lambda g: (np.asarray(g * grad, dtype),))


def per_sample_call(loss, y_true, y_pred):
    """``loss``'s per-sample values (no reduction) as one recorded op, with its analytic gradient: each value
    depends only on its own sample's entries along the loss's reduced axis."""
    values, grad = loss.call_with_grad(y_true, np.asarray(y_pred), need_grad=True)[:2]
    shape, dtype = np.shape(y_pred), np.asarray(y_pred).dtype

    def vjp(g):
        g = np.asarray(g, np.float64).reshape(np.shape(values))
        return (np.asarray(np.expand_dims(g, loss._reduced_axis) * grad, dtype).reshape(shape),)
    return ops.custom_gradient_op(f"{loss.name}_values", [y_pred], np.asarray(values, np.float32), vjp)


def tracks(y_pred):
    tape = active_tape()
    return tape is not None and tape.requires_grad(y_pred)
