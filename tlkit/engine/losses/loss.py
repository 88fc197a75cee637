"""Loss base class: per-sample values -> Keras's sample weighting and reduction, plus the matching gradient.

A subclass implements ``call(y_true, y_pred)`` (per-sample losses, Keras's contract) and, to be
trainable, ``call_with_grad(y_true, y_pred) -> (per-sample losses, d losses / d y_pred)``; each
per-sample loss may only depend on its own entries of y_pred, so that derivative has y_pred's shape.

>>> loss = CategoricalCrossentropy()
>>> loss(y_true, y_pred)                                     # float, "sum_over_batch_size"
>>> value, grad = loss.value_and_grad(y_true, y_pred, sample_weight=w)   # grad: float32, y_pred's shape
"""
import numpy as np

from tlkit.engine.losses import differentiable
from tlkit.engine.losses.ranks import squeeze_or_expand_to_same_rank

REDUCTIONS = ("sum_over_batch_size", "sum", None, "none", "mean", "mean_with_sample_weight")


def standardize_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"Invalid value for argument `reduction`. Expected one of {REDUCTIONS}. "
                         f"Received: reduction={reduction!r}")
    return reduction


def as_float(x):
    """float64 copy-free view when possible: every loss is computed in float64, then reported as float/float32."""
    return np.asarray(x, dtype=np.float64)


class Loss:
    """Base class; ``reduction`` and ``name`` as in Keras. ``dtype`` is accepted for compatibility
    (computation is float64, gradients float32)."""

    _reduced_axis = -1  # the y_pred axis that call() reduces per sample (crossentropies: their ``axis``)

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or type(self).__name__
        self.reduction = standardize_reduction(reduction)
        self.dtype = dtype

    # ----- to be provided by subclasses -----
    def call(self, y_true, y_pred):
        return self.call_with_grad(y_true, y_pred, need_grad=False)[0]

    @property
    def _differentiated_by_ops(self):
        """A subclass that defines only ``call`` (written with tlkit.ops) is differentiated by the tape."""
        return type(self).call_with_grad is Loss.call_with_grad and type(self).call is not Loss.call

    def call_with_grad(self, y_true, y_pred, need_grad=True):
        """(per-sample losses, d losses / d y_pred or None [, mask of valid entries or None])."""
        if not need_grad and self._differentiated_by_ops:
            return np.asarray(self.call(y_true, y_pred), np.float64), None
        raise NotImplementedError(
            f"{type(self).__name__} cannot be used for training: implement "
            "`call_with_grad(y_true, y_pred, need_grad=True) -> (per_sample_losses, d_losses_d_y_pred)`."
        )

    # ----- fused activation + loss -----
    # The final activation whose logits this loss can take directly: its call_with_grad(...,
    # from_logits=True) then gives the gradient w.r.t. the logits (crossentropies set it).
    fusable_activation = None

    def supports_logits_fusion(self, activation):
        """True when this loss can take the logits of a final ``activation`` layer (see value_and_grad_logits)."""
        return (self.fusable_activation is not None and activation == self.fusable_activation
                and not getattr(self, "from_logits", False))

    def value_and_grad_logits(self, y_true, logits, activation, sample_weight=None, mask=None):
        """Loss of ``activation(logits)`` and its gradient w.r.t. the logits, computed stably in log space;
        ``mask``: the Keras mask the activation's output carries."""
        if not self.supports_logits_fusion(activation):
            raise ValueError(f"{type(self).__name__} cannot fuse with a final {activation!r} activation; "
                             "check supports_logits_fusion(activation) first.")
        return self._value_and_grad(self.call_with_grad(y_true, logits, from_logits=True), sample_weight,
                                    np.shape(logits), mask)

    # ----- public API -----
    def __call__(self, y_true, y_pred, sample_weight=None, mask=None):
        """``mask``: Keras's (a (batch, steps) mask on y_pred, by default the one y_pred carries): masked
        entries count neither in the sum nor in the mean."""
        if differentiable.tracks(y_pred):  # inside a GradientTape: a differentiable Tensor
            return differentiable.recorded_call(self, y_true, y_pred, sample_weight)
        mask = getattr(y_pred, "_keras_mask", None) if mask is None else mask
        result = self.call_with_grad(y_true, y_pred, need_grad=False)
        value, _ = self._reduce(result[0], None, _mask_of(result, mask), sample_weight, np.shape(y_pred))
        return value

    def value_and_grad(self, y_true, y_pred, sample_weight=None, mask=None):
        """``(reduced loss as float, d loss / d y_pred as float32 array of y_pred's shape)``."""
        if self._differentiated_by_ops:
            return differentiable.value_and_grad(self, y_true, y_pred, sample_weight)
        return self._value_and_grad(self.call_with_grad(y_true, y_pred, need_grad=True), sample_weight,
                                    np.shape(y_pred), mask)

    def _value_and_grad(self, result, sample_weight, pred_shape, mask=None):
        if self.reduction in (None, "none"):
            raise ValueError("A loss with reduction=None has no single value to differentiate; use "
                             "'sum_over_batch_size' (the default) or 'sum' for training.")
        return self._reduce(result[0], result[1], _mask_of(result, mask), sample_weight, pred_shape)

    def _reduce(self, values, grads, mask, sample_weight, pred_shape):
        """Keras's reduce_weighted_values (mask folded into the weights), and the chain rule through it."""
        values = np.asarray(values, np.float64)
        per_sample_shape = values.shape
        weights = apply_mask(None if sample_weight is None else as_float(sample_weight), mask, self.reduction)
        if weights is not None:
            values, weights = squeeze_or_expand_to_same_rank(values, weights)
            weighted = values * weights
        else:
            weighted = values
        if self.reduction in (None, "none") or weighted.ndim == 0 or weighted.size == 0 and weighted.ndim == 1:
            # Keras returns unreduced (and scalar) values as they are.
            out = weighted.astype(np.float32)
            grads = _chain(grads, weights, values.shape, per_sample_shape, pred_shape, 1.0, self._reduced_axis)
            return (out if out.ndim else float(out)), grads
        divisor = 1.0
        if self.reduction in ("sum_over_batch_size", "mean"):
            divisor = weighted.size
        elif self.reduction == "mean_with_sample_weight":
            divisor = float(weights.sum()) if weights is not None else weighted.size
        value = float(weighted.sum() / divisor) if divisor else 0.0
        scale = 1.0 / divisor if divisor else 0.0
        return value, _chain(grads, weights, values.shape, per_sample_shape, pred_shape, scale, self._reduced_axis)

    # ----- config -----
    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def apply_mask(sample_weight, mask, reduction):
    """Keras's apply_mask: a 0/1 mask folded into the sample weights (the mask alone without them). With a
    mean reduction, the valid entries weigh total/valid, so the mean is over them only; metrics pass "sum"."""
    if mask is None:
        return sample_weight
    mask = np.asarray(mask, np.float64)
    if reduction in ("mean", "sum_over_batch_size"):
        valid = mask.sum()
        mask = mask * (mask.size / valid if valid else 0.0)
    if sample_weight is None:
        return mask
    mask, sample_weight = squeeze_or_expand_to_same_rank(mask, np.asarray(sample_weight, np.float64))
    return sample_weight * mask


def _mask_of(result, keras_mask=None):
    """The entries that count: the loss's own valid entries, and-ed with a Keras mask on y_pred."""
    own = result[2] if len(result) > 2 else None
    if keras_mask is None:
        return own
    keras_mask = np.asarray(keras_mask, bool)
    if keras_mask.shape != np.shape(result[0]):
        raise ValueError(f"The output's mask has shape {keras_mask.shape} but the loss has one value per entry of "
                         f"shape {np.shape(result[0])}; masks apply to per-step losses (return_sequences=True).")
    return keras_mask if own is None else np.logical_and(own, keras_mask)


def _chain(grads, weights, values_shape, per_sample_shape, pred_shape, scale, axis):
    """d(reduced)/d(y_pred) = scale * (weights summed back to the values' shape) * d values / d y_pred."""
    if grads is None:
        return None
    d_values = np.full(values_shape, scale)
    if weights is not None:
        w = np.broadcast_to(weights, np.broadcast_shapes(values_shape, weights.shape))
        # Sum over axes that broadcasting added or stretched, back to the values' shape.
        w = w.sum(axis=tuple(range(w.ndim - len(values_shape)))) if w.ndim > len(values_shape) else w
        stretched = tuple(i for i, (a, b) in enumerate(zip(values_shape, w.shape)) if a == 1 and b != 1)
        w = w.sum(axis=stretched, keepdims=True) if stretched else w
        d_values = d_values * w
    # grads has y_pred's (possibly squeezed) shape: the per-sample shape plus the reduced axis.
    d_values = d_values.reshape(per_sample_shape)
    return (grads * np.expand_dims(d_values, axis)).astype(np.float32).reshape(pred_shape)
