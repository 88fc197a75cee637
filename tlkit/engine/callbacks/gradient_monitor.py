"""GradientMonitor: per-layer gradient norm, weight norm and update/weight ratio every batch, with one
warning when gradients vanish or explode.

The norms come from the optimizer's fused update kernels (``optimizer.last_update_norms``), which sum
the squares of values they already hold, so watching every batch costs no pass over the weights.

>>> monitor = GradientMonitor()
>>> model.fit(x, y, callbacks=[monitor])
>>> monitor.warnings          # the messages it issued (also sent through ``warnings.warn``)
>>> monitor.epoch_norms[-1]   # {layer name: mean gradient norm over the last epoch}
"""
import math
import warnings

from tlkit.engine.callbacks.callback import Callback

ADVICE_EXPLODE = ("Lower the learning rate, clip gradients (e.g. optimizer=Adam(clipnorm=1.0)), and check the "
                  "input scale (inputs far from [-1, 1] or unnormalised targets make gradients large).")
ADVICE_VANISH = ("Check the input scale, prefer relu-family activations to deep sigmoid/tanh stacks, use He/Glorot "
                 "initialisation or BatchNormalization, and consider a higher learning rate for these layers.")


class GradientWarning(UserWarning):
    """Gradients vanished or exploded during training."""


def owner_names(model):
    """{id(variable): name of the layer that owns it}, leaves first so nested models name their layers."""
    owners = {}
    for layer in [model] + model._all_layers():
        for v in layer._own_weights:
            owners[id(v)] = layer.name
    return owners


def layer_update_norms(optimizer, owners):
    """{layer: (gradient norm, weight norm, update norm / weight norm)} of the optimizer's last step."""
    squares = {}
    variables = optimizer.variables
    for index, sums in optimizer.last_update_norms.items():
        if sums is None:
            continue
        layer = owners.get(id(variables[index]), variables[index].name)
        acc = squares.setdefault(layer, [0.0, 0.0, 0.0])
        for k in range(3):
            acc[k] += sums[k]
    out = {}
    for layer, (g_sq, w_sq, u_sq) in squares.items():
        w = math.sqrt(w_sq)
        out[layer] = (math.sqrt(g_sq), w, math.sqrt(u_sq) / w if w > 0 else math.inf)
    return out


class GradientMonitor(Callback):
    """Watches each trainable layer's gradient norm after every training batch.

    explode_factor: a layer's gradient norm above ``explode_factor`` times its running typical value
        (a geometric moving average), or a non-finite norm, means gradients explode.
    vanish_threshold / patience: a layer whose gradient norm stays below ``vanish_threshold`` times the
        largest layer gradient norm of the same step for ``patience`` consecutive steps has vanishing
        gradients (relative, so a small loss alone never triggers it; an all-zero gradient counts).
    Each kind is warned about once per ``fit``, naming the worst layer, with advice: the message is kept
    in ``self.warnings`` and passed to ``on_warning`` (default: ``warnings.warn`` as a GradientWarning).
    log_norms: add to the epoch logs ``grad_norm/<group>`` (the epoch's mean over steps of the group's
        gradient norm) and ``learning_rate`` (unless present), so History, CSV and TensorBoard record them;
        ``group`` maps a layer name to its group (default: each layer its own).
    """

    def __init__(self, explode_factor=1e3, vanish_threshold=1e-5, patience=20, smoothing=0.1, on_warning=None,
                 log_norms=False, group=None):
        super().__init__()
        if explode_factor <= 1 or not 0 < vanish_threshold < 1 or patience < 1 or not 0 < smoothing <= 1:
            raise ValueError("GradientMonitor needs explode_factor > 1, 0 < vanish_threshold < 1, patience >= 1 and "
                             f"0 < smoothing <= 1; got {explode_factor}, {vanish_threshold}, {patience}, {smoothing}.")
        self.explode_factor = explode_factor
        self.vanish_threshold = vanish_threshold
        self.patience = int(patience)
        self.smoothing = smoothing
        self.on_warning = on_warning
        self.log_norms = log_norms
        self.group = group or (lambda layer: layer)
        self.warnings = []
        self.epoch_norms = []  # one {layer: mean gradient norm} per epoch
        self.last_norms = {}  # {layer: (gradient norm, weight norm, update/weight ratio)} of the last batch

    def on_train_begin(self, logs=None):
        self._owners = None
        self._typical_log = {}
        self._low_steps = {}
        self._warned = set()
        self._epoch_sum, self._epoch_count = {}, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_sum, self._group_sum, self._epoch_count = {}, {}, 0

    def on_train_batch_end(self, batch, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not optimizer.last_update_norms:
            return
        if self._owners is None:
            self._owners = owner_names(self.model)
        norms = layer_update_norms(optimizer, self._owners)
        self.last_norms = norms
        self._epoch_count += 1
        group_squares = {}
        for layer, (g, _, _) in norms.items():
            self._epoch_sum[layer] = self._epoch_sum.get(layer, 0.0) + g
            group = self.group(layer)
            group_squares[group] = group_squares.get(group, 0.0) + g * g
        for group, squares in group_squares.items():
            self._group_sum[group] = self._group_sum.get(group, 0.0) + math.sqrt(squares)
        if "explode" not in self._warned:
            self._check_explode(norms)
        if "vanish" not in self._warned:
            self._check_vanish(norms)

    def _check_explode(self, norms):
        worst, worst_jump = None, 0.0
        for layer, (g, _, _) in norms.items():
            if not math.isfinite(g):
                self._warn("explode", f"GradientMonitor: the gradient of layer '{layer}' is not finite (inf or NaN) "
                                      f"at step {self._step()}. {ADVICE_EXPLODE}")
                return
            log_g = math.log10(g) if g > 0 else None
            typical = self._typical_log.get(layer)
            if log_g is None:
                continue
            if typical is not None:
                jump = log_g - typical
                if jump > math.log10(self.explode_factor) and jump > worst_jump:
                    worst, worst_jump = layer, jump
                self._typical_log[layer] = typical + self.smoothing * (log_g - typical)
            else:
                self._typical_log[layer] = log_g
        if worst is not None:
            self._warn("explode", f"GradientMonitor: exploding gradients in layer '{worst}': its gradient norm "
                                  f"{norms[worst][0]:.3g} is {10 ** worst_jump:.3g} times its typical value at step "
                                  f"{self._step()}. {ADVICE_EXPLODE}")

    def _check_vanish(self, norms):
        finite = [g for g, _, _ in norms.values() if math.isfinite(g)]
        if len(norms) < 2 or not finite or max(finite) <= 0:
            return
        floor = self.vanish_threshold * max(finite)
        for layer, (g, _, _) in norms.items():
            self._low_steps[layer] = self._low_steps.get(layer, 0) + 1 if g < floor else 0
        stuck = [layer for layer, n in self._low_steps.items() if n >= self.patience]
        if stuck:
            worst = min(stuck, key=lambda layer: norms[layer][0])
            others = f" ({len(stuck) - 1} other layer(s) too)" if len(stuck) > 1 else ""
            self._warn("vanish", f"GradientMonitor: vanishing gradients in layer '{worst}'{others}: its gradient norm "
                                 f"{norms[worst][0]:.3g} has stayed below {self.vanish_threshold:g} x the largest "
                                 f"layer's for {self.patience} steps, so it barely learns. {ADVICE_VANISH}")

    def _step(self):
        return self.model.optimizer.iterations

    def _warn(self, kind, message):
        self._warned.add(kind)
        self.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(message)
        else:
            warnings.warn(message, GradientWarning, stacklevel=3)

    def on_epoch_end(self, epoch, logs=None):
        if not self._epoch_count:
            return
        self.epoch_norms.append({k: v / self._epoch_count for k, v in self._epoch_sum.items()})
        if self.log_norms and logs is not None:
            for group, total in self._group_sum.items():
                logs[f"grad_norm/{group}"] = total / self._epoch_count
            logs.setdefault("learning_rate", float(self.model.optimizer.learning_rate))
