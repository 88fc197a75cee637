"""Keras's overridable steps: ``train_step(data)``, ``test_step(data)``, ``predict_step(data)``, with the
surface they use (``compute_loss``, ``metrics``, ``compiled_loss``/``compiled_metrics`` of Keras 2).

``fit``/``evaluate``/``predict`` call a model's own step only when its class overrides it; otherwise they
go straight to the fused built-in step (no repacking of the batch, no extra tape).

>>> class CustomModel(tlkit.Model):
...     def train_step(self, data):
...         x, y = data
...         with tlkit.GradientTape() as tape:
...             y_pred = self(x, training=True)
...             loss = self.compute_loss(y=y, y_pred=y_pred)
...         self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
...         ...
...         return {m.name: m.result() for m in self.metrics}
"""
import numpy as np

from tlkit.engine import ops
from tlkit.engine.data_adapter import unpack
from tlkit.engine.layer_calls import added_losses
from tlkit.engine.metrics.metric import Metric
from tlkit.engine.symbolic import flatten
from tlkit.engine.tensor import plain


def pack_data(x, y=None, sample_weight=None):
    """The ``data`` a step receives, as Keras packs it: x alone, (x, y) or (x, y, sample_weight)."""
    if y is None and sample_weight is None:
        return (x,) if isinstance(x, (list, tuple)) else x
    return (x, y) if sample_weight is None else (x, y, sample_weight)


def as_logs(result):
    """A step's returned dict as callback logs: nested dicts (compile_metrics) flattened, scalars as floats."""
    logs = {}
    for name, value in dict(result or {}).items():
        if isinstance(value, dict):
            logs.update(as_logs(value))
            continue
        value = np.asarray(plain(value))
        logs[name] = float(value) if value.size == 1 else value
    return logs


class CompileMetrics(Metric):
    """The metrics given to ``compile(metrics=...)`` as one Metric (Keras 3's ``compile_metrics``): its
    ``update_state(y, y_pred, sample_weight)`` updates them all and ``result()`` is a dict of their values."""

    def __init__(self, model):
        super().__init__(name="compile_metrics")
        self._model = model

    def update_state(self, y_true, y_pred, sample_weight=None):
        model = self._model
        preds = [np.asarray(plain(p)) for p in flatten(y_pred)]
        ys = model._targets(y_true)
        sws = model._sample_weights(sample_weight, len(preds))
        if model._metrics is None:
            model._build_metrics(ys, preds)
        model._update_compiled_metrics(preds, ys, sws)

    def result(self):
        return {label: float(metric.result()) for _, label, metric in self._model._metrics or []}

    def reset_state(self):
        for _, _, metric in self._model._metrics or []:
            metric.reset_state()


class CompiledLoss:
    """Keras 2's ``model.compiled_loss(y, y_pred, sample_weight=None, regularization_losses=None)``: the
    compiled loss (plus the model's own losses when ``regularization_losses`` is given), which also
    updates the "loss" entry of ``model.metrics``."""

    def __init__(self, model):
        self._model = model

    def __call__(self, y_true, y_pred, sample_weight=None, regularization_losses=None):
        model = self._model
        total = model._compiled_loss_value(y_true, y_pred, sample_weight, regularization_losses is not None)
        batch = len(flatten(y_pred)[0])
        model._loss_trackers[0].update_state(float(np.asarray(plain(total))), sample_weight=batch)
        return total


class StepAPI:
    """Mixed into Trainer: the overridable steps and what they use."""

    # ----- what a step's body uses -----
    @property
    def metrics(self):
        """The loss tracker(s), the compiled metrics (as one ``compile_metrics`` entry) and the Metric
        objects held in the model's attributes (``self.loss_tracker = Mean(name="loss")``)."""
        out = []
        if getattr(self, "compiled", False):
            out += list(self._loss_trackers[:1])
            if self._metric_spec is not None:
                out.append(self.compiled_metrics)
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(item, Metric) and all(item is not m for m in out):
                    out.append(item)
        return out

    @property
    def compiled_metrics(self):
        if self.__dict__.get("_compiled_metrics") is None:
            self._compiled_metrics = CompileMetrics(self)
        return self._compiled_metrics

    @property
    def compiled_loss(self):
        return CompiledLoss(self)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss(es) of ``y_pred`` against ``y`` plus the model's own losses (weight penalties,
        ``add_loss``); differentiable inside a GradientTape."""
        return self._compiled_loss_value(y, y_pred, sample_weight, True)

    def _compiled_loss_value(self, y, y_pred, sample_weight, with_model_losses):
        self._require_compiled()
        preds = flatten(y_pred)
        terms = []
        if y is not None:
            ys = self._targets(y)
            sws = self._sample_weights(sample_weight, len(preds))
            for pred, target, sw, loss, weight in zip(preds, ys, sws, self._output_losses, self._loss_weights):
                if loss is not None and target is not None:
                    value = loss(target, pred, sample_weight=sw)
                    terms.append(value if weight == 1.0 else ops.multiply(value, weight))
        if with_model_losses:
            terms += [_penalty(v) for v in self.trainable_weights if v.regularizer is not None]
            terms += [ops.sum(t) for t in added_losses(self)]
        if not terms:
            raise ValueError("No loss to compute: pass `loss=` to compile(), or compute the loss yourself in "
                             "train_step.")
        total = terms[0]
        for term in terms[1:]:
            total = ops.add(total, term)
        return ops.convert_to_tensor(total)

    # ----- the steps -----
    def train_step(self, data):
        """One training step on ``data`` (what fit yields per batch); returns the logs. Override it to train
        your own way; ``super().train_step(data)`` runs the built-in one."""
        return self._fused_train_step(*unpack(data))

    def test_step(self, data):
        return self._fused_test_step(*unpack(data))

    def predict_step(self, data):
        x, _, _ = unpack(data)
        return self(x, training=False)

    def _overrides(self, step):
        return getattr(type(self), step) is not getattr(StepAPI, step)

    def _run_train_step(self, x, y, sample_weight):
        if not self._overrides("train_step"):
            return self._fused_train_step(x, y, sample_weight)
        return as_logs(self.train_step(pack_data(x, y, sample_weight)))

    def _run_test_step(self, x, y, sample_weight):
        if not self._overrides("test_step"):
            return self._fused_test_step(x, y, sample_weight)
        return as_logs(self.test_step(pack_data(x, y, sample_weight)))

    def _run_predict_step(self, x):
        if not self._overrides("predict_step"):
            return self(x, training=False)
        return self.predict_step(pack_data(x))

    def _reset_step_metrics(self):
        """Reset what ``metrics`` lists (a custom step's own trackers included), as fit does each epoch."""
        for metric in self.metrics:
            metric.reset_state()


def _penalty(var):
    """A weight penalty as an op: its value, with the regularizer's gradient."""
    reg = var.regularizer
    return ops.custom_gradient_op("regularizer", [var], np.float32(reg(var.value)),
                                  lambda g: (np.asarray(g * reg.gradient(var.value), var.dtype),))
