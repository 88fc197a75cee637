"""Cross-entropy losses (categorical, sparse categorical, binary) with Keras's maths and their gradients.

Probability inputs follow Keras exactly: categorical outputs are renormalised to sum to 1, then every
probability is clipped to [1e-7, 1 - 1e-7] (the gradient is zero where clipping bites). Logit inputs
(``from_logits=True``, or the fused path below) use log-softmax / log-sigmoid and are never clipped.

Fused path: when the model's last layer applies softmax (or sigmoid) and the loss expects
probabilities, ``value_and_grad_logits`` takes that layer's logits z and returns the loss of
softmax(z) with its gradient ``softmax(z) * sum(y) - y`` (binary: ``sigmoid(z) - y``), so the model
skips the activation's backward pass. It equals Keras's clipped value to ~1e-6 while every
probability lies in [1e-7, 1 - 1e-7]. Outside, Keras caps each term at -log(1e-7) = 16.12 and its
gradient vanishes, whereas the fused value keeps growing (e.g. 30.0 for a true-class logit 30
below the others) and keeps a useful gradient -- the behaviour of Keras/TF when they see logits.

>>> CategoricalCrossentropy(label_smoothing=0.1)(y_true_one_hot, probabilities)
>>> SparseCategoricalCrossentropy(from_logits=True)(labels, logits)    # labels: (N,) or (N, 1) ints
>>> BinaryCrossentropy()(y_true, probabilities)
"""
import numpy as np

from tlkit.engine.losses.loss import Loss, as_float
from tlkit.engine.losses.ranks import squeeze_or_expand_to_same_rank

EPSILON = 1e-7  # keras.backend.epsilon()


# ----- elementary pieces -----
def _log_softmax(z, axis):
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def _sigmoid(z):
    return np.exp(_log_sigmoid(z))


def _clip_with_mask(p):
    """Clipped probabilities and where clipping lets the gradient through (TF's clip: inclusive bounds)."""
    return np.clip(p, EPSILON, 1.0 - EPSILON), (p >= EPSILON) & (p <= 1.0 - EPSILON)


def _categorical(y, p, from_logits, axis, need_grad):
    """-sum(y * log q) over ``axis`` and its gradient w.r.t. p (probabilities) or z (logits)."""
    if from_logits:
        log_q = _log_softmax(p, axis)
        values = -(y * log_q).sum(axis=axis)
        grad = np.exp(log_q) * y.sum(axis=axis, keepdims=True) - y if need_grad else None
        return values, grad
    total = p.sum(axis=axis, keepdims=True)
    q = p / total
    clipped, passes = _clip_with_mask(q)
    values = -(y * np.log(clipped)).sum(axis=axis)
    if not need_grad:
        return values, None
    d_q = np.where(passes, -y / clipped, 0.0)
    # Through the renormalisation q = p / sum(p).
    grad = (d_q - (d_q * q).sum(axis=axis, keepdims=True)) / total
    return values, grad


def _as_ids(values):
    """Whole-valued floats as ints for messages (labels arrive as float64 here): [7, -1], not [7.0, -1.0]."""
    return [int(v) if float(v).is_integer() else float(v) for v in values]


def _check_labels(labels, num_classes, ignore_class):
    valid = labels != ignore_class if ignore_class is not None else np.ones(labels.shape, bool)
    if np.any(labels[valid] != np.round(labels[valid])):
        raise ValueError("sparse_categorical_crossentropy expects integer class ids in y_true; got fractional "
                         "values. For one-hot targets use categorical_crossentropy.")
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if np.any(bad):
        raise ValueError(
            f"sparse_categorical_crossentropy got class ids {_as_ids(np.unique(labels[bad])[:10])} outside "
            f"[0, {num_classes}) for predictions with {num_classes} classes. Check the labels or the size of the "
            "last layer."
        )
    return valid


def _sparse(labels, p, from_logits, ignore_class, need_grad):
    """Per-sample losses, gradient and valid mask for integer ``labels`` of shape p.shape[:-1]."""
    labels = np.asarray(labels)
    if labels.ndim == p.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != p.shape[:-1]:
        raise ValueError(
            "Arguments `target` and `output` must have the same shape up until the last dimension: "
            f"target.shape={labels.shape}, output.shape={p.shape}"
            + (". The targets look one-hot: use categorical_crossentropy, or integer labels with "
               "sparse_categorical_crossentropy." if labels.shape == p.shape else "")
        )
    if (ignore_class is None and labels.dtype.kind in "iu" and labels.size
            and labels.min() >= 0 and labels.max() < p.shape[-1]):
        index = labels.astype(np.intp)[..., None]  # integer class ids in range: the usual case, two reductions
        valid = None
    else:
        valid = _check_labels(labels.astype(np.float64), p.shape[-1], ignore_class)
        index = np.where(valid, labels, 0).astype(np.intp)[..., None]
    if from_logits:
        log_q = _log_softmax(p, -1)
        values = -np.take_along_axis(log_q, index, axis=-1)[..., 0]
        grad = None
        if need_grad:
            grad = np.exp(log_q)
            np.put_along_axis(grad, index, np.take_along_axis(grad, index, axis=-1) - 1.0, axis=-1)
    else:
        total = p.sum(axis=-1, keepdims=True)
        q = p / total
        clipped, passes = _clip_with_mask(np.take_along_axis(q, index, axis=-1))
        values = -np.log(clipped)[..., 0]
        grad = None
        if need_grad:
            d_true = np.where(passes, -1.0 / clipped, 0.0)  # d loss / d q at the true class, 0 elsewhere
            grad = -d_true * np.take_along_axis(q, index, axis=-1) * np.ones_like(p)
            np.put_along_axis(grad, index, np.take_along_axis(grad, index, axis=-1) + d_true, axis=-1)
            grad /= total
    if ignore_class is not None:
        values = np.where(valid, values, 0.0)
        grad = None if grad is None else grad * valid[..., None]
    return values, grad, (None if ignore_class is None else valid)


def _binary(y, p, from_logits, axis, need_grad):
    """mean over ``axis`` of the elementwise binary cross-entropy, and its gradient."""
    if from_logits:
        elementwise = -(y * _log_sigmoid(p) + (1.0 - y) * _log_sigmoid(-p))
        grad = _sigmoid(p) - y if need_grad else None
    else:
        clipped, passes = _clip_with_mask(p)
        elementwise = -(y * np.log(clipped) + (1.0 - y) * np.log(1.0 - clipped))
        grad = np.where(passes, (1.0 - y) / (1.0 - clipped) - y / clipped, 0.0) if need_grad else None
    values = elementwise.mean(axis=axis)
    if grad is not None:
        grad = grad / elementwise.shape[axis]
    return values, grad


def _smooth_categorical(y, label_smoothing, axis):
    if label_smoothing:
        return y * (1.0 - label_smoothing) + label_smoothing / y.shape[axis]
    return y


def _smooth_binary(y, label_smoothing):
    return y * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else y


def _aligned(y_true, y_pred):
    return squeeze_or_expand_to_same_rank(as_float(y_true), as_float(y_pred))


def _check_same_shape(y, p, name):
    if y.shape != p.shape:
        raise ValueError(f"{name}: y_true of shape {y.shape} does not match y_pred of shape {p.shape}. "
                         "For integer labels use sparse_categorical_crossentropy.")


# ----- function forms (per-sample losses, like keras.losses.*) -----
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Per-sample categorical cross-entropy of one-hot ``y_true``; shape y_pred.shape without ``axis``."""
    y, p = as_float(y_true), as_float(y_pred)
    _check_same_shape(y, p, "categorical_crossentropy")
    return _categorical(_smooth_categorical(y, label_smoothing, axis), p, from_logits, axis, False)[0].astype(
        np.float32)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Per-sample cross-entropy of integer labels (shape y_pred.shape[:-1], or with a trailing 1)."""
    if axis not in (-1, np.ndim(y_pred) - 1):
        raise ValueError(f"sparse_categorical_crossentropy supports only the last axis as class axis; got axis={axis}")
    return _sparse(y_true, as_float(y_pred), from_logits, ignore_class, False)[0].astype(np.float32)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Elementwise binary cross-entropy averaged over ``axis``."""
    y, p = as_float(y_true), as_float(y_pred)
    _check_same_shape(y, p, "binary_crossentropy")
    return _binary(_smooth_binary(y, label_smoothing), p, from_logits, axis, False)[0].astype(np.float32)


# ----- classes (what compile/fit use) -----
class CategoricalCrossentropy(Loss):
    """One-hot targets; ``label_smoothing`` s turns them into ``y * (1 - s) + s / num_classes``."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(axis, bool):
            raise ValueError(f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}")
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis
        self._reduced_axis = axis

    def call_with_grad(self, y_true, y_pred, need_grad=True, from_logits=None):
        y, p = _aligned(y_true, y_pred)
        _check_same_shape(y, p, self.name)
        from_logits = self.from_logits if from_logits is None else from_logits
        return _categorical(_smooth_categorical(y, self.label_smoothing, self.axis), p, from_logits, self.axis,
                            need_grad)

    fusable_activation = "softmax"

    def supports_logits_fusion(self, activation):
        return super().supports_logits_fusion(activation) and self.axis == -1  # the layer's softmax axis

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


class SparseCategoricalCrossentropy(Loss):
    """Integer class ids as targets, shape (N,) or (N, 1) for predictions (N, C).

    ``ignore_class``: entries with this label count neither in the loss nor in the batch average.
    """

    fusable_activation = "softmax"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits, self.ignore_class = from_logits, ignore_class

    def call_with_grad(self, y_true, y_pred, need_grad=True, from_logits=None):
        from_logits = self.from_logits if from_logits is None else from_logits
        return _sparse(y_true, as_float(y_pred), from_logits, self.ignore_class, need_grad)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class}


class BinaryCrossentropy(Loss):
    """0/1 targets; ``label_smoothing`` s squeezes them towards 0.5: ``y * (1 - s) + 0.5 * s``."""

    fusable_activation = "sigmoid"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis
        self._reduced_axis = axis

    def call_with_grad(self, y_true, y_pred, need_grad=True, from_logits=None):
        y, p = _aligned(y_true, y_pred)
        _check_same_shape(y, p, self.name)
        from_logits = self.from_logits if from_logits is None else from_logits
        return _binary(_smooth_binary(y, self.label_smoothing), p, from_logits, self.axis, need_grad)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}
