"""Metrics with Keras 3's names and semantics: stateful over an epoch.

>>> from tlkit.engine import metrics
>>> m = metrics.get("AUC")                       # class names, snake_case names, "mse"/"mae"/"acc", dicts, callables
>>> m.update_state(y_true, y_pred); m.result(); m.reset_state()
>>> metrics.resolve_accuracy("accuracy", loss, y_true.shape, y_pred.shape)   # compile's accuracy choice
"""
import inspect

from tlkit.engine import losses as _losses
from tlkit.engine.metrics.accuracy import (Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
                                           SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy, accuracy,
                                           binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
                                           sparse_top_k_categorical_accuracy, top_k_categorical_accuracy)
from tlkit.engine.metrics.confusion import AUC, Precision, Recall
from tlkit.engine.metrics.metric import Mean, MeanMetricWrapper, Metric
from tlkit.engine.metrics.more_regression import (CategoricalHinge, CosineSimilarity, Hinge, KLDivergence,
                                                  LogCoshError, MeanAbsolutePercentageError,
                                                  MeanSquaredLogarithmicError, Poisson, SquaredHinge)
from tlkit.engine.metrics.regression import MeanAbsoluteError, MeanSquaredError
from tlkit.utils.text import snake_case

_CLASSES = (Mean, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
            SparseTopKCategoricalAccuracy, Precision, Recall, AUC, MeanSquaredError, MeanAbsoluteError,
            MeanAbsolutePercentageError, MeanSquaredLogarithmicError, CosineSimilarity, LogCoshError, Poisson,
            KLDivergence, Hinge, SquaredHinge, CategoricalHinge)
_CLASS_BY_NAME = {
    **{cls.__name__: cls for cls in _CLASSES},
    **{snake_case(cls.__name__): cls for cls in _CLASSES},
    "mse": MeanSquaredError, "MSE": MeanSquaredError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "acc": Accuracy, "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError, "logcosh": LogCoshError,
    "kld": KLDivergence, "KLD": KLDivergence,
}
# Loss functions double as metrics ("categorical_crossentropy", "huber", ...): their epoch mean.
_LOSS_FUNCTIONS = {fn.__name__: fn for fn in (
    _losses.categorical_crossentropy, _losses.sparse_categorical_crossentropy, _losses.binary_crossentropy,
    _losses.huber)}


def serialize(metric):
    """``{"class_name": ..., "config": {...}}``."""
    return {"class_name": type(metric).__name__, "config": metric.get_config()}


def deserialize(config, custom_objects=None):
    """A metric from :func:`serialize` output or a name."""
    custom_objects = custom_objects or {}
    if isinstance(config, str):
        return get(config)
    name = config.get("class_name") if isinstance(config, dict) else None
    cls = custom_objects.get(name) or _CLASS_BY_NAME.get(name)
    if cls is None or cls is MeanMetricWrapper:
        raise ValueError(f"Unknown metric class {name!r}. Known: {sorted(c.__name__ for c in _CLASSES)}; pass your "
                         "own with custom_objects={'MyMetric': MyMetric}.")
    return cls.from_config(dict(config.get("config", {})))


def get(identifier):
    """A new Metric from a name ("AUC", "auc", "mse", "accuracy" = exact-match Accuracy), a dict, a class,
    a Metric (returned as is) or a function ``fn(y_true, y_pred) -> per-sample values`` (its epoch mean)."""
    if identifier is None or isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier in _CLASS_BY_NAME:
            return _CLASS_BY_NAME[identifier]()
        if identifier in _LOSS_FUNCTIONS:
            return MeanMetricWrapper(_LOSS_FUNCTIONS[identifier], name=identifier)
        raise ValueError(f"Unknown metric {identifier!r}. Known: {sorted(_CLASS_BY_NAME)} and loss names "
                         f"{sorted(_LOSS_FUNCTIONS)}.")
    if inspect.isclass(identifier) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise ValueError(f"Could not interpret metric identifier: {identifier!r}")


def resolve_accuracy(identifier, loss=None, y_true_shape=None, y_pred_shape=None):
    """Keras compile's metric choice (compile_utils.get_metric): "accuracy"/"acc" become binary,
    sparse-categorical or categorical accuracy, named after the identifier.

    Keras 3 decides from the shapes alone: binary if y_pred's last dim is 1; sparse if y_true has
    lower rank than y_pred or its last dim is 1 while y_pred's is not; else categorical. ``loss``
    (a Loss) only decides when the shapes are not given. Other identifiers go through :func:`get`
    and, when strings, name the metric.
    """
    if str(identifier).lower() not in ("accuracy", "acc"):
        metric = get(identifier)
        if isinstance(identifier, str):
            metric.name = identifier
        return metric
    if y_true_shape is not None and y_pred_shape is not None:
        is_binary = y_pred_shape[-1] == 1
        is_sparse = len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1] == 1 and y_pred_shape[-1] > 1)
    else:
        is_binary = isinstance(loss, _losses.BinaryCrossentropy)
        is_sparse = isinstance(loss, _losses.SparseCategoricalCrossentropy)
    if is_binary:
        return BinaryAccuracy(name=str(identifier))
    if is_sparse:
        return SparseCategoricalAccuracy(name=str(identifier))
    return CategoricalAccuracy(name=str(identifier))


__all__ = ["Metric", "Mean", "MeanMetricWrapper", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy",
           "SparseCategoricalAccuracy", "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Precision",
           "Recall", "AUC", "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
           "MeanSquaredLogarithmicError", "CosineSimilarity", "LogCoshError", "Poisson", "KLDivergence", "Hinge",
           "SquaredHinge", "CategoricalHinge", "accuracy", "binary_accuracy",
           "categorical_accuracy", "sparse_categorical_accuracy", "top_k_categorical_accuracy",
           "sparse_top_k_categorical_accuracy", "get", "serialize", "deserialize", "resolve_accuracy"]
