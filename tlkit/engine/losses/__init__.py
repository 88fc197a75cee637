"""Losses with Keras 3's names, arguments, reductions and sample weighting, plus their gradients.

>>> from tlkit.engine import losses
>>> loss = losses.get("categorical_crossentropy")     # names, Keras aliases ("mse", "mae", "bce"), classes, dicts
>>> loss(y_true, y_pred)                              # float
>>> value, grad = loss.value_and_grad(y_true, y_pred, sample_weight=None)
>>> losses.mean_squared_error(y_true, y_pred)         # function form: per-sample values
"""
import functools
import inspect

import numpy as np

from tlkit.engine.losses import differentiable
from tlkit.engine.losses.crossentropy import (BinaryCrossentropy, CategoricalCrossentropy,
                                              SparseCategoricalCrossentropy, binary_crossentropy,
                                              categorical_crossentropy, sparse_categorical_crossentropy)
from tlkit.engine.losses.hinge import CategoricalHinge, Hinge, SquaredHinge, categorical_hinge, hinge, squared_hinge
from tlkit.engine.losses.loss import Loss
from tlkit.engine.losses.more_regression import (CosineSimilarity, KLDivergence, LogCosh, MeanAbsolutePercentageError,
                                                 MeanSquaredLogarithmicError, Poisson, cosine_similarity,
                                                 kl_divergence, log_cosh, mean_absolute_percentage_error,
                                                 mean_squared_logarithmic_error, poisson)
from tlkit.engine.losses.regression import (Huber, MeanAbsoluteError, MeanSquaredError, huber, mean_absolute_error,
                                            mean_squared_error)



def _recording(fn, cls):
    """``fn`` (a per-sample function form) that, inside a GradientTape tracking y_pred, records its values as
    one op with the gradient of ``cls`` (same maths), so ``loss = losses.mean_squared_error(y, model(x))``
    trains in a custom loop."""
    params = list(inspect.signature(fn).parameters.values())[2:]
    accepted = set(inspect.signature(cls).parameters)

    @functools.wraps(fn)
    def function(y_true, y_pred, *args, **kwargs):
        if not differentiable.tracks(y_pred):
            return fn(y_true, y_pred, *args, **kwargs)
        options = {**{p.name: p.default for p in params}, **dict(zip([p.name for p in params], args)), **kwargs}
        if any(k not in accepted and v != next(p.default for p in params if p.name == k) for k, v in options.items()):
            return fn(y_true, y_pred, *args, **kwargs)  # an option the class lacks: fn's own checks answer
        return differentiable.per_sample_call(cls(**{k: v for k, v in options.items() if k in accepted}),
                                              y_true, y_pred)
    return function


(categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy, mean_squared_error,
 mean_absolute_error, huber) = (
    _recording(categorical_crossentropy, CategoricalCrossentropy),
    _recording(sparse_categorical_crossentropy, SparseCategoricalCrossentropy),
    _recording(binary_crossentropy, BinaryCrossentropy), _recording(mean_squared_error, MeanSquaredError),
    _recording(mean_absolute_error, MeanAbsoluteError), _recording(huber, Huber))

_CLASSES = (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy, MeanSquaredError,
            MeanAbsoluteError, Huber, MeanAbsolutePercentageError, MeanSquaredLogarithmicError, CosineSimilarity,
            LogCosh, Poisson, KLDivergence, Hinge, SquaredHinge, CategoricalHinge)
_CLASS_OF_FUNCTION = {
    categorical_crossentropy: CategoricalCrossentropy, sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    binary_crossentropy: BinaryCrossentropy, mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError, huber: Huber,
    mean_absolute_percentage_error: MeanAbsolutePercentageError,
    mean_squared_logarithmic_error: MeanSquaredLogarithmicError, cosine_similarity: CosineSimilarity,
    log_cosh: LogCosh, poisson: Poisson, kl_divergence: KLDivergence, hinge: Hinge, squared_hinge: SquaredHinge,
    categorical_hinge: CategoricalHinge,
}
_FUNCTION_BY_NAME = {
    **{fn.__name__: fn for fn in _CLASS_OF_FUNCTION},
    "bce": binary_crossentropy, "BCE": binary_crossentropy, "mse": mean_squared_error, "MSE": mean_squared_error,
    "mae": mean_absolute_error, "MAE": mean_absolute_error,
    "mape": mean_absolute_percentage_error, "MAPE": mean_absolute_percentage_error,
    "msle": mean_squared_logarithmic_error, "MSLE": mean_squared_logarithmic_error,
    "kld": kl_divergence, "KLD": kl_divergence, "logcosh": log_cosh,
}
_CLASS_BY_NAME = {cls.__name__: cls for cls in _CLASSES}


class LossFunctionWrapper(Loss):
    """A plain ``fn(y_true, y_pred, **kwargs) -> per-sample losses`` as a Loss. Written with tlkit.ops
    (or numpy operators on y_pred, a Tensor), it trains: the tape differentiates it."""

    _differentiated_by_ops = True

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", "loss"), reduction=reduction, dtype=dtype)
        self.fn, self._fn_kwargs = fn, kwargs

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def call_with_grad(self, y_true, y_pred, need_grad=True):
        return np.asarray(self.call(y_true, y_pred), np.float64), None

    def get_config(self):
        return {**super().get_config(), "fn": getattr(self.fn, "__name__", repr(self.fn)), **self._fn_kwargs}


def serialize(loss):
    """A Loss -> ``{"class_name": ..., "config": {...}}``; a built-in function -> its name."""
    if isinstance(loss, Loss):
        return {"class_name": type(loss).__name__, "config": loss.get_config()}
    if loss in _CLASS_OF_FUNCTION:
        return loss.__name__
    raise ValueError(f"Cannot serialize loss {loss!r}: only tlkit Loss instances and built-in loss functions can be.")


def deserialize(config, custom_objects=None):
    """Inverse of :func:`serialize`; also reads Keras's ``{"class_name": "function", "config": name}`` form."""
    custom_objects = custom_objects or {}
    if isinstance(config, str):
        obj = custom_objects.get(config) or _FUNCTION_BY_NAME.get(config) or _CLASS_BY_NAME.get(config)
        if obj is None:
            raise ValueError(f"Unknown loss {config!r}. Known: {sorted(set(_FUNCTION_BY_NAME) | set(_CLASS_BY_NAME))}.")
        return obj
    if isinstance(config, dict):
        name = config.get("class_name")
        if name == "function":
            return deserialize(config.get("config"), custom_objects)
        cls = custom_objects.get(name) or _CLASS_BY_NAME.get(name)
        if cls is None:
            raise ValueError(f"Unknown loss class {name!r}. Known: {sorted(_CLASS_BY_NAME)}; pass your own with "
                             "custom_objects={'MyLoss': MyLoss}.")
        return cls.from_config(dict(config.get("config", {})))
    raise ValueError(f"Could not interpret serialized loss {config!r}.")


def get(identifier):
    """A trainable Loss instance from a name, a Keras alias, a class, a config dict, a Loss or a function.

    Built-in function names and functions give their class (``"mse"`` -> MeanSquaredError named "mse");
    any other callable is wrapped for evaluation only.
    """
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    obj = deserialize(identifier) if isinstance(identifier, (str, dict)) else identifier
    if isinstance(obj, Loss):
        return obj
    if inspect.isclass(obj) and issubclass(obj, Loss):
        return obj()
    if obj in _CLASS_OF_FUNCTION:
        return _CLASS_OF_FUNCTION[obj](name=identifier if isinstance(identifier, str) else obj.__name__)
    if callable(obj):
        return LossFunctionWrapper(obj)
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}")


__all__ = ["Loss", "LossFunctionWrapper", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
           "BinaryCrossentropy", "MeanSquaredError", "MeanAbsoluteError", "Huber", "categorical_crossentropy",
           "sparse_categorical_crossentropy", "binary_crossentropy", "mean_squared_error", "mean_absolute_error",
           "huber", "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "CosineSimilarity", "LogCosh",
           "Poisson", "KLDivergence", "Hinge", "SquaredHinge", "CategoricalHinge", "mean_absolute_percentage_error",
           "mean_squared_logarithmic_error", "cosine_similarity", "log_cosh", "poisson", "kl_divergence", "hinge",
           "squared_hinge", "categorical_hinge", "get", "serialize", "deserialize"]
