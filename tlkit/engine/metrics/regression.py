"""Regression metrics: epoch means of the per-sample mean squared / absolute error."""
from tlkit.engine.losses import mean_absolute_error, mean_squared_error
from tlkit.engine.metrics.metric import MeanMetricWrapper


class MeanSquaredError(MeanMetricWrapper):
    """``metrics=["mse"]``: mean over samples of mean(square(y_true - y_pred), axis=-1)."""

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


class MeanAbsoluteError(MeanMetricWrapper):
    """``metrics=["mae"]``: mean over samples of mean(abs(y_true - y_pred), axis=-1)."""

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
