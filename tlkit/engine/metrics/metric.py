"""Metric base class, Mean (the epoch-average used for the loss) and MeanMetricWrapper, as in Keras.

>>> m = Mean(name="loss")
>>> m.update_state(0.5, sample_weight=32); m.update_state(0.25, sample_weight=16)
>>> m.result()      # (0.5 * 32 + 0.25 * 16) / 48
0.4166666666666667
>>> m.reset_state()
"""
import numpy as np

from tlkit.engine.losses.loss import apply_mask
from tlkit.engine.losses.ranks import squeeze_or_expand_to_same_rank
from tlkit.engine.tensor import mask_of
from tlkit.utils.text import snake_case


class Metric:
    """Stateful over an epoch: ``update_state(...)`` per batch, ``result()``, ``reset_state()``.

    Unlike Keras, two metrics of the same class get the same default name (no "_1" suffixes).
    """

    def __init__(self, name=None, dtype=None):
        self.name = name or snake_case(type(self).__name__)
        self.dtype = dtype or "float32"

    def update_state(self, *args, **kwargs):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def add_variable(self, shape, initializer, dtype=None, aggregation="sum", name=None):
        """A state Variable (Keras 3): ``self.count = self.add_variable((), "zeros", name="count")``."""
        from tlkit.engine.variable import Variable

        var = Variable(initializer=initializer, shape=tuple(shape), name=f"{self.name}/{name or 'variable'}",
                       trainable=False, dtype=dtype or self.dtype)
        self.__dict__.setdefault("_state_variables", []).append(var)
        return var

    def add_weight(self, shape=(), initializer="zeros", dtype=None, name=None, **kwargs):
        return self.add_variable(shape, initializer or "zeros", dtype=dtype, name=name)

    @property
    def variables(self):
        return list(self.__dict__.get("_state_variables", ()))

    def reset_state(self):
        """Zero every state Variable (Keras's default); metrics that keep other state override this."""
        if not self.variables:
            raise NotImplementedError(f"{type(self).__name__} must implement reset_state() (or keep its state "
                                      "in variables made with add_variable/add_weight).")
        for var in self.variables:
            var.assign(np.zeros(var.shape, var.dtype))

    def __call__(self, *args, **kwargs):
        """Update with one batch and return the running result."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def _samplewise(values, sample_weight):
    """Keras's reduce_to_samplewise_values with a mean: per-sample weighted values and per-sample weights."""
    values = np.asarray(values, np.float64)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, np.float64)
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        if values.ndim > sample_weight.ndim:
            values = values.mean(axis=tuple(range(sample_weight.ndim, values.ndim)))
        sample_weight = np.broadcast_to(sample_weight, values.shape)
        values = values * sample_weight
        if sample_weight.ndim > 1:
            sample_weight = sample_weight.mean(axis=tuple(range(1, sample_weight.ndim)))
    if values.ndim > 1:
        values = values.mean(axis=tuple(range(1, values.ndim)))
    return values, sample_weight


class Mean(Metric):
    """Weighted mean of everything passed to ``update_state(values, sample_weight=None)``.

    Per-sample values are first averaged over their non-batch axes; each sample then counts with its
    weight (default 1), and a scalar counts once -- or ``sample_weight`` times.
    """

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values, sample_weight=None):
        values, sample_weight = _samplewise(values, sample_weight)
        self.total += float(values.sum())
        if sample_weight is not None:
            self.count += float(sample_weight.sum())
        else:
            self.count += values.shape[0] if values.ndim >= 1 else 1

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def result(self):
        return self.total / self.count if self.count else 0.0


class MeanMetricWrapper(Mean):
    """Mean over samples of ``fn(y_true, y_pred, **kwargs)`` (per-sample values): any numpy function works.

    >>> m = MeanMetricWrapper(lambda t, p: np.abs(t - p).max(axis=-1), name="max_error")
    """

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", "mean_metric_wrapper"), dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self._fn(np.asarray(y_true), np.asarray(y_pred), **self._fn_kwargs)
        super().update_state(values, sample_weight=apply_mask(sample_weight, mask_of(y_pred), "sum"))

    def get_config(self):
        return {**super().get_config(), "fn": getattr(self._fn, "__name__", repr(self._fn)), **self._fn_kwargs}
