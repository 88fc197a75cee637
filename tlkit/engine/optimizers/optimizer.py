"""Optimizer base class with Keras 3's step order: clip gradients -> decoupled weight decay -> update -> iterations += 1.

Subclasses list their per-variable slot arrays (``_slot_specs``) and update one variable in place
(``_update_step``); everything else -- building the slots for the variable list on first use,
learning-rate schedules, clipping, weight decay, config and resumable state -- lives here.

>>> opt = Adam(learning_rate=1e-3, clipnorm=1.0)
>>> opt.apply_gradients(zip(grads, variables))   # or opt.apply(grads, variables)
>>> opt.iterations, opt.learning_rate
(1, 0.001)
>>> state = opt.get_state()                      # {"iterations": ..., "learning_rate": ..., "momentum/0": ...}
>>> fresh = Adam(learning_rate=1e-3, clipnorm=1.0); fresh.set_state(state)   # resumes bit-identically
"""
import numbers
import re
import warnings

import numpy as np

from tlkit.engine.optimizers import schedules


def _snake_case(name):
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", name).lower()


def _check_learning_rate(learning_rate):
    if isinstance(learning_rate, schedules.LearningRateSchedule) or callable(learning_rate):
        return learning_rate
    if isinstance(learning_rate, numbers.Real) and not isinstance(learning_rate, bool):
        return float(learning_rate)
    raise ValueError(
        "Argument `learning_rate` should be float, or an instance of LearningRateSchedule, or a callable "
        "(that takes in the current iteration value and returns the corresponding learning rate value). "
        f"Received instead: learning_rate={learning_rate!r}"
    )


class Optimizer:
    """Base class. Keyword arguments shared by every optimizer (Keras names and defaults):

    weight_decay: float or None. Decoupled decay ``w -= w * weight_decay * lr`` before each update.
    clipnorm / clipvalue / global_clipnorm: at most one; clip each gradient's norm, each gradient's
        values, or the norm of all gradients together.
    loss_scale_factor: gradients are divided by it before anything else.
    use_ema / gradient_accumulation_steps: accepted for config compatibility; only the defaults
        (False / None) are supported.
    """

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.")
        if "lr" in kwargs:  # Keras 2's spelling, still in much code: used, with Keras 2's deprecation warning
            learning_rate = kwargs.pop("lr")
            warnings.warn("The `lr` argument is deprecated, use `learning_rate` instead.", FutureWarning,
                          stacklevel=3)
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if use_ema:
            raise NotImplementedError("tlkit optimizers do not support use_ema=True yet; leave it False.")
        if gradient_accumulation_steps:
            raise NotImplementedError(
                "tlkit optimizers do not support gradient_accumulation_steps yet; use a larger batch_size instead."
            )
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self.name = name or _snake_case(type(self).__name__)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self._learning_rate = _check_learning_rate(learning_rate)
        self.iterations = 0
        self._variables = None  # the list the slots were built for; None until built
        self._index = {}  # id(variable) -> position in that list
        self._slots = {}  # slot name -> one float32 array per variable, by position
        self._decay_excluded_ids, self._decay_excluded_pattern = set(), None
        # Gradient monitoring: {variable position: (|g|^2, |w|^2, |update|^2) or None} of the last step;
        # the gradients themselves only while a callback asks for them (TensorBoard histograms).
        self.last_update_norms = {}
        self.keep_last_gradients = False
        self.last_gradients = {}

    # ----- to be provided by subclasses -----
    def _slot_specs(self):
        """[(slot name, initial value)] in creation order, e.g. Adam: [("momentum", 0.0), ("velocity", 0.0)]."""
        return []

    def _update_step(self, index, gradient, value, learning_rate):
        """Update ``value`` (flat float32 weights of variable ``index``) in place from the flat ``gradient``.

        Returns the squared norms (gradient, new weights, update) the fused kernel accumulated, or None
        when the subclass does not compute them (monitoring then skips the variable).
        """
        raise NotImplementedError

    def _slot(self, name, index):
        return self._slots[name][index].reshape(-1)

    # ----- learning rate -----
    @property
    def learning_rate(self):
        """The rate the next step will use (a schedule is evaluated at ``iterations``)."""
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            return float(lr(self.iterations))
        if callable(lr):
            return float(lr())
        return lr

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        if (isinstance(self._learning_rate, schedules.LearningRateSchedule)
                and not isinstance(learning_rate, schedules.LearningRateSchedule) and not callable(learning_rate)):
            # Keras 3 refuses this too (TypeError), e.g. when ReduceLROnPlateau meets a schedule.
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its `learning_rate` constructor "
                "argument, hence its learning rate is not settable. If you need the learning rate to be settable, "
                "you should instantiate the optimizer with a float `learning_rate` argument."
            )
        self._learning_rate = _check_learning_rate(learning_rate)

    # ----- building -----
    @property
    def variables(self):
        """The variables the slots were built for, in position order ([] before the first step)."""
        return list(self._variables or [])

    @property
    def built(self):
        return self._variables is not None

    def build(self, variables):
        """Create the slot arrays for ``variables`` (done by the first apply). Slots loaded by set_state are kept."""
        variables = list(variables)
        loaded = self._slots
        for name, _ in self._slot_specs():
            if name in loaded:
                _check_loaded_slots(name, loaded[name], variables)
        self._slots = {
            name: loaded[name] if name in loaded else [np.full(v.shape, initial, np.float32) for v in variables]
            for name, initial in self._slot_specs()
        }
        self._variables = variables
        self._index = {id(v): i for i, v in enumerate(variables)}

    # ----- one step -----
    def apply_gradients(self, grads_and_vars):
        """``opt.apply_gradients(zip(grads, variables))``; returns ``iterations``."""
        grads, variables = zip(*grads_and_vars)
        self.apply(grads, variables)
        return self.iterations

    def apply(self, grads, variables=None):
        """One update of ``variables`` (the same list every step) from float32 ``grads`` of the same shapes.

        ``variables`` may be omitted once built. A None gradient skips its variable (with a warning).
        """
        grads = list(grads)
        if not grads:
            return
        if variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer must already be built on a list of "
                    "variables. Call `optimizer.build(trainable_variables)` first."
                )
            variables = self._variables
        else:
            variables = list(variables)
            if not self.built:
                self.build(variables)
        if len(grads) != len(variables):
            raise ValueError(f"Got {len(grads)} gradients for {len(variables)} variables; they must pair up 1:1.")
        pairs = self._checked_pairs(grads, variables)
        if self.loss_scale_factor is not None:
            pairs = [(g / np.float32(self.loss_scale_factor), v) for g, v in pairs]
        pairs = list(zip(self._clip([g for g, _ in pairs]), [v for _, v in pairs]))
        lr = self.learning_rate
        self._apply_weight_decay([v for _, v in pairs], lr)
        # --- update statistics for gradient monitoring (the kernels compute them in their one pass) ---
        norms = {}
        for g, v in pairs:
            index = self._index[id(v)]
            norms[index] = self._update_step(index, g.reshape(-1), v.value.reshape(-1), lr)
            v.version += 1  # written in place: what layers derived from the weight (folds, packings) is stale
        self.last_update_norms = norms
        if self.keep_last_gradients:
            self.last_gradients = {self._index[id(v)]: g for g, v in pairs}
        # --- end of update statistics ---
        self.iterations += 1

    def _checked_pairs(self, grads, variables):
        pairs, missing = [], []
        for g, v in zip(grads, variables):
            if id(v) not in self._index:
                raise ValueError(
                    f"Unknown variable: {v}. This optimizer can only be called for the variables it was originally "
                    "built with. When working with a new set of variables, you should recreate a new optimizer "
                    "instance."
                )
            if g is None:
                missing.append(v.name)
                continue
            g = np.ascontiguousarray(g, dtype=np.float32)
            if g.shape != v.shape:
                raise ValueError(f"Gradient of shape {g.shape} does not match variable '{v.name}' of shape {v.shape}.")
            pairs.append((g, v))
        if not pairs:
            raise ValueError("No gradients provided for any variable.")
        if missing:
            warnings.warn(f"Gradients do not exist for variables {missing} when minimizing the loss.")
        return pairs

    def _clip(self, grads):
        # New arrays, so the caller's gradients are never modified.
        if self.clipnorm and self.clipnorm > 0:
            c = self.clipnorm
            return [g * np.float32(c / max(_norm(g), c)) for g in grads]
        if self.global_clipnorm and self.global_clipnorm > 0:
            c = self.global_clipnorm
            norm = float(np.sqrt(sum(_norm(g) ** 2 for g in grads)))
            scale = c * min(1.0 / norm if norm else np.inf, 1.0 / c)
            scale = scale + (norm - norm)  # NaN for an inf/NaN norm, as Keras does
            return [g * np.float32(scale) for g in grads]
        if self.clipvalue and self.clipvalue > 0:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Skip weight decay for these variables, or for those whose name contains any of ``var_names``."""
        self._decay_excluded_ids = {id(v) for v in var_list or []}
        self._decay_excluded_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _apply_weight_decay(self, variables, lr):
        if self.weight_decay is None:
            return
        factor = np.float32(lr) * np.float32(self.weight_decay)
        for v in variables:
            if id(v) in self._decay_excluded_ids:
                continue
            if self._decay_excluded_pattern is not None and self._decay_excluded_pattern.search(v.name):
                continue
            v.value -= v.value * factor

    # ----- config -----
    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            lr = schedules.serialize(lr)
        elif callable(lr):
            raise ValueError(
                "This optimizer's learning_rate is a plain callable, which cannot be saved. Use a float or a "
                "tlkit.optimizers.schedules.LearningRateSchedule subclass with get_config()."
            )
        return {
            "name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue, "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum, "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"], custom_objects)
        return cls(**config)

    # ----- resumable state -----
    def get_state(self):
        """Flat dict of copies: "iterations", "learning_rate" (unless scheduled) and "<slot>/<position>" arrays."""
        state = {"iterations": np.array(self.iterations, np.int64)}
        if not callable(self._learning_rate):
            state["learning_rate"] = np.array(self._learning_rate, np.float64)
        for name, arrays in self._slots.items():
            for i, array in enumerate(arrays):
                state[f"{name}/{i}"] = array.copy()
        return state

    def set_state(self, state):
        """Restore :meth:`get_state` output, before or after the first step. A scheduled rate ignores "learning_rate"."""
        slot_names = [name for name, _ in self._slot_specs()]
        loaded = {name: {} for name in slot_names}
        for key, value in state.items():
            name, _, position = key.rpartition("/")
            if key in ("iterations", "learning_rate"):
                continue
            if name not in loaded or not position.isdigit():
                raise ValueError(
                    f"Optimizer state key {key!r} does not belong to {type(self).__name__} with this configuration "
                    f"(its slots are {slot_names}). Was the state saved from a different optimizer?"
                )
            loaded[name][int(position)] = np.array(value, np.float32)
        slots = {}
        for name, by_position in loaded.items():
            if sorted(by_position) != list(range(len(by_position))):
                raise ValueError(f"Optimizer state has gaps in slot '{name}': positions {sorted(by_position)}.")
            slots[name] = [by_position[i] for i in range(len(by_position))]
        if len({len(arrays) for arrays in slots.values()}) > 1:
            raise ValueError("Optimizer state is inconsistent: its slots hold different numbers of arrays.")
        if self.built:
            for name, arrays in slots.items():
                _check_loaded_slots(name, arrays, self._variables)
                for target, array in zip(self._slots[name], arrays):
                    np.copyto(target, array)
        else:
            self._slots = slots  # adopted by build() once the variables are known
        self.iterations = int(state.get("iterations", 0))
        if "learning_rate" in state and not callable(self._learning_rate):
            self._learning_rate = float(state["learning_rate"])

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name} iterations={self.iterations}>"


def _norm(g):
    flat = g.reshape(-1)
    return float(np.sqrt(np.dot(flat, flat)))


def _check_loaded_slots(name, arrays, variables):
    if len(arrays) != len(variables):
        raise ValueError(
            f"Optimizer state holds {len(arrays)} '{name}' arrays but the model has {len(variables)} trainable "
            "variables; the state was saved for a different model or a different set of trainable layers."
        )
    for i, (array, v) in enumerate(zip(arrays, variables)):
        if array.shape != v.shape:
            raise ValueError(
                f"Optimizer state '{name}/{i}' has shape {array.shape} but variable '{v.name}' has shape {v.shape}."
            )
