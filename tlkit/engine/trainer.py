"""compile / fit / evaluate / predict with Keras's arguments, defaults and log names."""
import warnings

import numpy as np

from tlkit.engine import data_adapter
from tlkit.engine import losses as losses_mod
from tlkit.engine import metrics as metrics_mod
from tlkit.engine.activations import FUSABLE
from tlkit.engine.callbacks.callback import CallbackList
from tlkit.engine.callbacks.history import History
from tlkit.engine.callbacks.progbar_logger import ProgbarLogger
from tlkit.engine.layer import Layer
from tlkit.engine.layer_calls import added_losses
from tlkit.engine.step_api import StepAPI
from tlkit.engine.symbolic import flatten
from tlkit.engine.tape import GradientTape
from tlkit.engine.tensor import Tensor, mask_of, plain


def _verbose(verbose):
    return 1 if verbose == "auto" else int(verbose)


class Trainer(StepAPI):
    """Mixed into Model: everything about training."""

    def __init__(self):
        self.optimizer = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._compile_config = None
        self._output_losses = None
        self._metrics = None

    # ----- compile -----
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, weighted_metrics=None,
                run_eagerly=None, steps_per_execution=1, jit_compile=None, **kwargs):
        """``model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])``."""
        # Imported here: the optimizers' numba kernels would double the time of `import tlkit`.
        from tlkit.engine import optimizers as optimizers_mod

        if kwargs:
            raise TypeError(f"Invalid keyword argument(s) in `compile()`: {sorted(kwargs)}.")
        self.optimizer = optimizers_mod.get(optimizer)
        names = self.output_names
        self._loss_spec = loss
        self._output_losses = self._per_output(loss, names, "loss", losses_mod.get)
        weights = self._per_output(loss_weights, names, "loss_weights", float) if loss_weights is not None \
            else [1.0] * len(names)
        self._loss_weights = [1.0 if w is None else w for w in weights]
        self._metric_spec = metrics
        self._weighted_metric_spec = weighted_metrics
        self._metrics = None  # made on the first batch, when target shapes are known
        self._compiled_metrics = None
        self._loss_trackers = [metrics_mod.Mean(name="loss")]
        if len(names) > 1:
            self._loss_trackers += [metrics_mod.Mean(name=f"{n}_loss") for n in names]
        self.compiled = True
        self._compile_config = {"optimizer": optimizers_mod.serialize(self.optimizer), "loss": _jsonable(loss),
                                "metrics": _jsonable(metrics), "loss_weights": _jsonable(loss_weights)}

    @staticmethod
    def _per_output(spec, names, what, convert):
        if isinstance(spec, dict):
            unknown = set(spec) - set(names)
            if unknown:
                raise ValueError(f"In compile({what}=...), keys {sorted(unknown)} don't match any output; "
                                 f"the outputs are {names}.")
            return [convert(spec[n]) if spec.get(n) is not None else None for n in names]
        if isinstance(spec, (list, tuple)):
            if len(spec) != len(names):
                raise ValueError(f"compile({what}=...) got {len(spec)} entries for a model with {len(names)} outputs.")
            return [None if s is None else convert(s) for s in spec]
        return [None if spec is None else convert(spec)] * len(names) if what == "loss" else \
            [convert(spec)] * len(names)

    def _require_compiled(self):
        if not self.compiled:
            raise RuntimeError("You must call `compile()` before using the model for training or evaluation.")

    # ----- metrics -----
    def _build_metrics(self, ys, preds):
        names = self.output_names
        multi = len(names) > 1
        spec = self._metric_spec
        per_output = self._per_output(spec, names, "metrics", lambda s: s) if isinstance(spec, dict) else \
            ([spec] * len(names) if not (isinstance(spec, (list, tuple)) and spec and
                                         isinstance(spec[0], (list, tuple))) else list(spec))
        self._metrics = []
        for i, (name, wanted) in enumerate(zip(names, per_output)):
            for ident in flatten(wanted) if wanted is not None else []:
                if ident is None:
                    continue
                if isinstance(ident, str) and ident in ("accuracy", "acc"):
                    metric = metrics_mod.resolve_accuracy(ident, self._output_losses[i], ys[i].shape, preds[i].shape)
                    label = ident
                else:
                    metric = metrics_mod.get(ident)
                    label = ident if isinstance(ident, str) else metric.name
                self._metrics.append((i, f"{name}_{label}" if multi else label, metric))

    def reset_metrics(self):
        for _, _, metric in self._metrics or []:
            metric.reset_state()
        for tracker in getattr(self, "_loss_trackers", []):
            tracker.reset_state()
        self._reset_step_metrics()

    def _logs(self):
        logs = {t.name: float(t.result()) for t in self._loss_trackers}
        for _, label, metric in self._metrics:
            logs[label] = float(metric.result())
        return logs

    @property
    def metrics_names(self):
        if self._metrics is None:
            return ["loss"]
        return [t.name for t in self._loss_trackers] + [label for _, label, _ in self._metrics]

    # ----- one step -----
    def _targets(self, y):
        names = self.output_names
        if isinstance(y, dict):
            return [None if y.get(n) is None else np.asarray(y[n]) for n in names]
        ys = [np.asarray(t) for t in flatten(y)] if y is not None else [None] * len(names)
        if len(ys) != len(names):
            raise ValueError(f"The model has {len(names)} output(s) but {len(ys)} target array(s) were given.")
        return ys

    def _sample_weights(self, sample_weight, n):
        if sample_weight is None:
            return [None] * n
        if isinstance(sample_weight, dict):
            return [sample_weight.get(name) for name in self.output_names]
        sws = flatten(sample_weight) if isinstance(sample_weight, (list, tuple)) else [sample_weight] * n
        return [None if s is None else np.asarray(s, np.float32) for s in sws]

    def _compute_losses(self, preds, ys, sws, tape=None, variables=None):
        """Total loss, per-output losses and dL/d(output) (or dL/dlogits, with the fused records)."""
        total, per_output, grads, fused = 0.0, [], [], set()
        for i, (pred, y, sw, loss, weight) in enumerate(zip(preds, ys, sws, self._output_losses, self._loss_weights)):
            if loss is None or y is None:
                per_output.append(0.0)
                grads.append(None)
                continue
            record = tape.record_of(pred) if tape is not None else None
            activation = getattr(record.layer, "activation", None) if record is not None else None
            if (record is not None and record.layer.supports_logit_fusion and activation in FUSABLE
                    and loss.supports_logits_fusion(activation) and not _consumed_elsewhere(tape, pred)):
                logits = record.layer.logits_from_cache(record.cache)
                value, grad = loss.value_and_grad_logits(y, logits, activation, sample_weight=sw, mask=mask_of(pred))
                fused.add(record)
            elif tape is not None:
                value, grad = loss.value_and_grad(y, plain(pred), sample_weight=sw, mask=mask_of(pred))
            else:
                value, grad = float(loss(y, plain(pred), sample_weight=sw, mask=mask_of(pred))), None
            total += weight * float(value)
            per_output.append(float(value))
            grads.append(None if grad is None else (grad * np.float32(weight)).astype(np.float32, copy=False))
        total += self._model_losses_value(variables)
        return total, per_output, grads, fused

    def _model_losses_value(self, variables=None):
        """float(sum(self.losses)): the weight penalties of ``variables`` (the trainable weights) and the
        losses added in the last call, without a walk over the layers when there are none."""
        if type(self).losses is not Layer.losses:  # a model that defines its own losses
            return float(sum(self.losses))
        variables = self.trainable_weights if variables is None else variables
        return float(sum([v.regularizer(v.value) for v in variables if v.regularizer is not None] +
                         added_losses(self)))

    def _update_metrics(self, total, per_output, preds, ys, sws, batch_size):
        self._loss_trackers[0].update_state(total, sample_weight=batch_size)
        for tracker, value in zip(self._loss_trackers[1:], per_output):
            tracker.update_state(value, sample_weight=batch_size)
        self._update_compiled_metrics(preds, ys, sws)

    def _update_compiled_metrics(self, preds, ys, sws):
        for i, _, metric in self._metrics:
            if ys[i] is not None:
                metric.update_state(ys[i], preds[i], sample_weight=sws[i])

    def _fused_train_step(self, x, y, sample_weight=None):
        self._require_compiled()
        with GradientTape() as tape:
            preds = flatten(self(x, training=True))
        variables = self.trainable_weights  # after the call: a subclassed model builds its layers in it
        ys = self._targets(y)
        sws = self._sample_weights(sample_weight, len(preds))
        if self._metrics is None:
            self._build_metrics(ys, preds)
        total, per_output, grads, fused = self._compute_losses(preds, ys, sws, tape, variables)
        if variables:
            # Losses added in call() (add_loss) that depend on weights count with gradient 1.
            extra = [t for t in added_losses(self) if isinstance(t, Tensor) and tape.requires_grad(t)]
            weight_grads = tape.backprop(preds + extra, grads + [np.ones(t.shape, t.dtype) for t in extra],
                                         skip=fused)
            missing = [v.name for v in variables if id(v) not in weight_grads]
            if missing and not getattr(self, "_warned_missing_grads", False):
                self._warned_missing_grads = True
                warnings.warn(
                    f"Gradients do not exist for variables {missing} when minimizing the loss. If call() computes "
                    "with numpy between layers, gradients can't flow through that: use tlkit layers (Add, "
                    "Concatenate, Activation...) or a layer with a backward().", stacklevel=2)
            pairs = []
            for var in variables:
                g = weight_grads.get(id(var), (None, None))[1]
                g = np.zeros_like(var.value) if g is None else g
                if var.regularizer is not None:
                    g = g + var.regularizer.gradient(var.value)
                pairs.append((g.astype(np.float32, copy=False), var))
            self.optimizer.apply_gradients(pairs)
        self._update_metrics(total, per_output, [plain(p) for p in preds], ys, sws,
                             len(flatten(x)[0]) if not isinstance(x, dict) else len(next(iter(x.values()))))
        return self._logs()

    def _fused_test_step(self, x, y, sample_weight=None):
        self._require_compiled()
        preds = flatten(self(x, training=False))
        ys = self._targets(y)
        sws = self._sample_weights(sample_weight, len(preds))
        if self._metrics is None:
            self._build_metrics(ys, preds)
        total, per_output, _, _ = self._compute_losses(preds, ys, sws)
        self._update_metrics(total, per_output, preds, ys, sws, len(preds[0]))
        return self._logs()

    # ----- loops -----
    def _callbacks(self, callbacks, verbose, epochs, steps):
        cbs = list(callbacks or [])
        if isinstance(callbacks, CallbackList):
            cbs = callbacks.callbacks
        history = next((c for c in cbs if isinstance(c, History)), None)
        if history is None:
            history = History()
            # Last, as Keras: it then records the keys callbacks add to the epoch logs ("learning_rate").
            cbs.append(history)
        if verbose and not any(isinstance(c, ProgbarLogger) for c in cbs):
            cbs.append(ProgbarLogger())
        return CallbackList(cbs, model=self, verbose=verbose, epochs=epochs, steps=steps), history

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1, **kwargs):
        """Train for ``epochs`` epochs; returns a History (``history.history["loss"]``...)."""
        if kwargs:
            raise TypeError(f"Invalid keyword argument(s) in `fit()`: {sorted(kwargs)}.")
        self._require_compiled()
        verbose = _verbose(verbose)
        if validation_split and validation_data is None:
            (x, y, sample_weight), validation_data = data_adapter.split_validation(x, y, sample_weight,
                                                                                   validation_split)
        if class_weight is not None:
            if data_adapter.is_batch_source(x):
                x = data_adapter.ClassWeighted(x, class_weight)
            else:
                cw = data_adapter.class_weight_to_sample_weight(flatten(y)[0] if not isinstance(y, dict)
                                                                else next(iter(y.values())), class_weight)
                sample_weight = cw if sample_weight is None else np.asarray(sample_weight, np.float32) * cw
        train = data_adapter.make_batches(x, y, sample_weight, batch_size, steps_per_epoch, shuffle)
        val = None
        if validation_data is not None:
            val = self._validation_batches(validation_data, validation_batch_size or batch_size, validation_steps)
        cbs, history = self._callbacks(callbacks, verbose, epochs, train.steps)
        self.stop_training = False
        self.history = history
        self._initial_epoch = None
        cbs.on_train_begin()
        # A callback (BackupAndRestore) may resume an interrupted run at a later epoch.
        initial_epoch = self._initial_epoch if self._initial_epoch is not None else initial_epoch
        logs = {}
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            for step, (bx, by, bsw) in enumerate(train.epoch()):
                cbs.on_train_batch_begin(step)
                logs = self._run_train_step(bx, by, bsw)
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            train.on_epoch_end()
            logs = dict(logs)
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._run_evaluation(val, cbs)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return history

    def _validation_batches(self, data, batch_size, steps):
        if data_adapter.is_batch_source(data):
            return data_adapter.make_batches(data, steps=steps)
        if not isinstance(data, tuple) or len(data) not in (2, 3):
            raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight), "
                             "or an iterator of batches.")
        return data_adapter.make_batches(data[0], data[1], data[2] if len(data) == 3 else None, batch_size, steps)

    def _run_evaluation(self, batches, cbs):
        self.reset_metrics()
        cbs.on_test_begin()
        logs = {}
        for step, (bx, by, bsw) in enumerate(batches.epoch()):
            cbs.on_test_batch_begin(step)
            logs = self._run_test_step(bx, by, bsw)
            cbs.on_test_batch_end(step, logs)
        batches.on_epoch_end()
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        """Loss and metrics on data: a float, a list [loss, metric...] or (return_dict) a dict."""
        if kwargs:
            raise TypeError(f"Invalid keyword argument(s) in `evaluate()`: {sorted(kwargs)}.")
        self._require_compiled()
        batches = data_adapter.make_batches(x, y, sample_weight, batch_size, steps)
        cbs, _ = self._callbacks(callbacks, _verbose(verbose), 1, batches.steps)
        logs = self._run_evaluation(batches, cbs)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for ``x``, computed batch by batch (inference mode)."""
        batches = data_adapter.make_batches(x, None, None, batch_size, steps)
        cbs, _ = self._callbacks(callbacks, _verbose(verbose), 1, batches.steps)
        cbs.on_predict_begin()
        outs = []
        for step, (bx, _, _) in enumerate(batches.epoch()):
            cbs.on_predict_batch_begin(step)
            out = self._run_predict_step(bx)
            outs.append(flatten(out))
            cbs.on_predict_batch_end(step, {"outputs": out})
        batches.on_epoch_end()
        cbs.on_predict_end()
        if not outs:
            raise ValueError("predict() received no data.")
        joined = [np.concatenate(parts) for parts in zip(*outs)]
        return joined[0] if len(joined) == 1 else joined

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, reset_metrics=True,
                       return_dict=False):
        if class_weight is not None:
            cw = data_adapter.class_weight_to_sample_weight(flatten(y)[0], class_weight)
            sample_weight = cw if sample_weight is None else np.asarray(sample_weight) * cw
        if reset_metrics:
            self.reset_metrics()
        logs = self._run_train_step(x, y, sample_weight)
        return _result(logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, reset_metrics=True, return_dict=False):
        if reset_metrics:
            self.reset_metrics()
        return _result(self._run_test_step(x, y, sample_weight), return_dict)

    def predict_on_batch(self, x):
        return self(x, training=False)


def _result(logs, return_dict):
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def _consumed_elsewhere(tape, array):
    return any(x is array for rec in tape.records for x in rec.inputs)


def _jsonable(spec):
    """A compile argument as JSON: names stay names; objects become their config."""
    if spec is None or isinstance(spec, (str, int, float, bool)):
        return spec
    if isinstance(spec, dict):
        return {k: _jsonable(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_jsonable(v) for v in spec]
    if hasattr(spec, "get_config"):
        return {"class_name": type(spec).__name__, "config": spec.get_config()}
    return getattr(spec, "__name__", str(spec))

