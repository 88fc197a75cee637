"""Epoch means of Keras 3's other regression and hinge metrics: MeanAbsolutePercentageError,
MeanSquaredLogarithmicError, CosineSimilarity (the similarity itself, +1 for identical directions),
LogCoshError, Poisson, KLDivergence, Hinge, SquaredHinge and CategoricalHinge."""

from tlkit.engine import losses
from tlkit.engine.metrics.metric import MeanMetricWrapper


def cosine_similarity(y_true, y_pred, axis=-1):
    """Per-sample cosine similarity (the metric's sign: minus the loss's)."""
    return -losses.cosine_similarity(y_true, y_pred, axis=axis)


class _LossMean(MeanMetricWrapper):
    """The epoch mean of a loss function's per-sample values."""

    fn = None
    default_name = None

    def __init__(self, name=None, dtype=None):
        super().__init__(type(self).fn, name=name or self.default_name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


class MeanAbsolutePercentageError(_LossMean):
    fn, default_name = staticmethod(losses.mean_absolute_percentage_error), "mean_absolute_percentage_error"


class MeanSquaredLogarithmicError(_LossMean):
    fn, default_name = staticmethod(losses.mean_squared_logarithmic_error), "mean_squared_logarithmic_error"


class LogCoshError(_LossMean):
    fn, default_name = staticmethod(losses.log_cosh), "logcosh"


class Poisson(_LossMean):
    fn, default_name = staticmethod(losses.poisson), "poisson"


class KLDivergence(_LossMean):
    fn, default_name = staticmethod(losses.kl_divergence), "kl_divergence"


class Hinge(_LossMean):
    fn, default_name = staticmethod(losses.hinge), "hinge"


class SquaredHinge(_LossMean):
    fn, default_name = staticmethod(losses.squared_hinge), "squared_hinge"


class CategoricalHinge(_LossMean):
    fn, default_name = staticmethod(losses.categorical_hinge), "categorical_hinge"


class CosineSimilarity(MeanMetricWrapper):
    """``CosineSimilarity(axis=-1)``: mean cosine similarity between labels and predictions."""

    def __init__(self, name="cosine_similarity", dtype=None, axis=-1):
        super().__init__(cosine_similarity, name=name, dtype=dtype, axis=int(axis))
        self.axis = int(axis)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "axis": self.axis}


__all__ = ["MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "CosineSimilarity", "LogCoshError",
           "Poisson", "KLDivergence", "Hinge", "SquaredHinge", "CategoricalHinge"]
