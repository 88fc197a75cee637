"""Optimizers and schedules against float64 numpy re-implementations of Keras 3's documented update rules."""
import json
import math

import numpy as np
import pytest

from tlkit.engine import optimizers
from tlkit.engine.kernels import optim as kernels
from tlkit.engine.optimizers import schedules
from tlkit.engine.variable import Variable

SHAPES = [(4, 3), (5,), (2, 3, 2)]


# ----- reference: Keras's formulas, float64 -----
def _clip(grads, cfg):
    if cfg.get("clipnorm"):
        c = cfg["clipnorm"]
        return [g * c / max(np.linalg.norm(g), c) for g in grads]
    if cfg.get("global_clipnorm"):
        c = cfg["global_clipnorm"]
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        return [g * c * min(1 / norm, 1 / c) for g in grads]
    if cfg.get("clipvalue"):
        return [np.clip(g, -cfg["clipvalue"], cfg["clipvalue"]) for g in grads]
    return grads


def reference_run(kind, cfg, weights, grad_steps, lr_at=None):
    """Weights after applying each step's gradients, following the Keras docs' equations."""
    w = [x.astype(np.float64) for x in weights]
    lr0 = cfg.get("learning_rate", {"sgd": 0.01}.get(kind, 0.001))
    state = {}
    for t, grads in enumerate(grad_steps):
        lr = lr_at(t) if lr_at else lr0
        grads = _clip([g.astype(np.float64) for g in grads], cfg)
        wd = cfg.get("weight_decay", 0.004 if kind == "adamw" else None)
        for i, (g, x) in enumerate(zip(grads, w)):
            if wd is not None:
                x -= x * wd * lr
            s = state.setdefault(i, {"m": np.zeros_like(x), "v": np.zeros_like(x), "vhat": np.zeros_like(x),
                                     "avg": np.zeros_like(x),
                                     "acc": np.full_like(x, cfg.get("initial_accumulator_value", 0.1))})
            if kind == "sgd":
                mom = cfg.get("momentum", 0.0)
                if mom == 0:
                    x -= lr * g
                else:
                    s["m"] = mom * s["m"] - lr * g
                    x += mom * s["m"] - lr * g if cfg.get("nesterov") else s["m"]
            elif kind in ("adam", "adamw"):
                b1, b2, eps = cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.999), cfg.get("epsilon", 1e-7)
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * g * g
                v = s["v"]
                if cfg.get("amsgrad"):
                    s["vhat"] = np.maximum(s["vhat"], s["v"])
                    v = s["vhat"]
                alpha = lr * math.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
                x -= alpha * s["m"] / (np.sqrt(v) + eps)
            elif kind == "rmsprop":
                rho, mom, eps = cfg.get("rho", 0.9), cfg.get("momentum", 0.0), cfg.get("epsilon", 1e-7)
                s["v"] = rho * s["v"] + (1 - rho) * g * g
                denominator = s["v"] + eps
                if cfg.get("centered"):
                    s["avg"] = rho * s["avg"] + (1 - rho) * g
                    denominator = s["v"] - s["avg"] ** 2 + eps
                increment = lr * g / np.sqrt(denominator)
                if mom > 0:
                    s["m"] = mom * s["m"] + increment
                    x -= s["m"]
                else:
                    x -= increment
            elif kind == "adagrad":
                s["acc"] = s["acc"] + g * g
                x -= lr * g / np.sqrt(s["acc"] + cfg.get("epsilon", 1e-7))
    return w


def _problem(seed=0, steps=5, scale=1.0):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [[(scale * rng.standard_normal(s)).astype(np.float32) for s in SHAPES] for _ in range(steps)]
    return weights, grads


def _run(opt, weights, grad_steps):
    variables = [Variable(w.copy(), name=f"layer/w{i}") for i, w in enumerate(weights)]
    for grads in grad_steps:
        opt.apply(grads, variables)
    return variables


CASES = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True, "learning_rate": 0.1}),
    ("adam", {}), ("adam", {"amsgrad": True, "learning_rate": 0.01}), ("adam", {"beta_1": 0.5, "epsilon": 1e-3}),
    ("adamw", {"learning_rate": 0.01, "weight_decay": 0.1}), ("adamw", {}),
    ("rmsprop", {}), ("rmsprop", {"centered": True}), ("rmsprop", {"momentum": 0.5, "centered": True, "rho": 0.8}),
    ("adagrad", {"learning_rate": 0.1}), ("adagrad", {"initial_accumulator_value": 1.0}),
    ("sgd", {"clipnorm": 1.0}), ("adam", {"clipvalue": 0.3}), ("rmsprop", {"global_clipnorm": 2.0}),
    ("sgd", {"momentum": 0.5, "weight_decay": 0.05}),
]


@pytest.mark.parametrize("kind,cfg", CASES, ids=[f"{k}-{'-'.join(c) or 'default'}" for k, c in CASES])
def test_matches_numpy_reference(kind, cfg):
    weights, grad_steps = _problem(scale=3.0)
    opt = optimizers.get({"class_name": kind, "config": cfg})
    variables = _run(opt, weights, grad_steps)
    expected = reference_run(kind, cfg, weights, grad_steps)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.value, e, rtol=2e-5, atol=2e-6)
    assert opt.iterations == len(grad_steps)


def test_clipping_really_clips_and_leaves_caller_gradients_alone():
    weights, grad_steps = _problem(scale=10.0, steps=1)
    before = [g.copy() for g in grad_steps[0]]
    v = _run(optimizers.SGD(learning_rate=1.0, clipnorm=0.5), weights, grad_steps)
    for w0, var in zip(weights, v):
        assert np.linalg.norm(w0 - var.value) == pytest.approx(0.5, rel=1e-5)
    v = _run(optimizers.SGD(learning_rate=1.0, global_clipnorm=0.5), weights, grad_steps)
    total = math.sqrt(sum(float(np.sum((w0 - var.value) ** 2)) for w0, var in zip(weights, v)))
    assert total == pytest.approx(0.5, rel=1e-5)
    v = _run(optimizers.SGD(learning_rate=1.0, clipvalue=0.1), weights, grad_steps)
    assert max(float(np.max(np.abs(w0 - var.value))) for w0, var in zip(weights, v)) == pytest.approx(0.1, rel=1e-5)
    for g, b in zip(grad_steps[0], before):
        np.testing.assert_array_equal(g, b)


def test_global_clipnorm_of_non_finite_gradients_gives_nan_like_keras():
    variable = Variable(np.ones(3), "w")
    optimizers.SGD(global_clipnorm=1.0).apply([np.array([np.inf, 0, 0], np.float32)], [variable])
    assert np.all(np.isnan(variable.value))


def test_only_one_clipping_argument():
    with pytest.raises(ValueError, match="Only one of"):
        optimizers.Adam(clipnorm=1.0, clipvalue=1.0)


def test_exclude_from_weight_decay_by_name_and_by_variable():
    weights, grad_steps = _problem(steps=2)
    opt = optimizers.AdamW(learning_rate=0.01, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["w1"])
    decayed = _run(opt, weights, grad_steps)
    expected_decay = reference_run("adamw", {"learning_rate": 0.01, "weight_decay": 0.5}, weights, grad_steps)
    expected_plain = reference_run("adam", {"learning_rate": 0.01}, weights, grad_steps)
    np.testing.assert_allclose(decayed[0].value, expected_decay[0], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(decayed[1].value, expected_plain[1], rtol=2e-5, atol=2e-6)
    opt = optimizers.AdamW(learning_rate=0.01, weight_decay=0.5)
    variables = [Variable(w.copy(), name=f"w{i}") for i, w in enumerate(weights)]
    opt.exclude_from_weight_decay(var_list=[variables[2]])
    for grads in grad_steps:
        opt.apply(grads, variables)
    np.testing.assert_allclose(variables[2].value, expected_plain[2], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(variables[0].value, expected_decay[0], rtol=2e-5, atol=2e-6)


def test_adamw_requires_weight_decay():
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.AdamW(weight_decay=None)


# ----- schedules -----
def test_exponential_decay():
    smooth = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    stairs = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    for step in (0, 5, 10, 15, 37):
        assert smooth(step) == pytest.approx(0.1 * 0.5 ** (step / 10))
        assert stairs(step) == pytest.approx(0.1 * 0.5 ** (step // 10))
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.ExponentialDecay(0.1, decay_steps=0, decay_rate=0.5)


def test_piecewise_constant_boundaries_are_inclusive_on_the_left_interval():
    lr = schedules.PiecewiseConstantDecay([3, 6], [1.0, 0.5, 0.1])
    assert [lr(s) for s in range(9)] == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]
    with pytest.raises(ValueError, match="1 less"):
        schedules.PiecewiseConstantDecay([3, 6], [1.0, 0.5])


def test_cosine_decay_with_and_without_warmup():
    lr = schedules.CosineDecay(0.2, decay_steps=10, alpha=0.1)
    for step in (0, 3, 10, 25):
        s = min(step, 10)
        assert lr(step) == pytest.approx(0.2 * ((1 - 0.1) * 0.5 * (1 + math.cos(math.pi * s / 10)) + 0.1))
    warm = schedules.CosineDecay(0.0, decay_steps=10, warmup_target=0.2, warmup_steps=4)
    assert [warm(s) for s in range(5)] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert warm(9) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert warm(100) == pytest.approx(0.0, abs=1e-12)


def test_optimizer_follows_schedule_at_its_iterations():
    lr = schedules.PiecewiseConstantDecay([1, 3], [0.1, 0.01, 0.001])
    weights, grad_steps = _problem(steps=5)
    opt = optimizers.SGD(learning_rate=lr, momentum=0.9)
    variables = [Variable(w.copy(), name=f"w{i}") for i, w in enumerate(weights)]
    seen = []
    for grads in grad_steps:
        seen.append(opt.learning_rate)
        opt.apply(grads, variables)
    assert seen == [0.1, 0.1, 0.01, 0.01, 0.001]
    expected = reference_run("sgd", {"momentum": 0.9}, weights, grad_steps, lr_at=lr)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.value, e, rtol=2e-5, atol=2e-6)


# ----- learning rate property -----
def test_learning_rate_is_settable_for_a_float_rate():
    opt = optimizers.Adam(learning_rate=0.01)
    assert opt.learning_rate == 0.01
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5 and opt.get_config()["learning_rate"] == 0.5
    variable = Variable(np.zeros(2), "w")
    sgd = optimizers.SGD(learning_rate=1.0)
    sgd.apply([np.ones(2, np.float32)], [variable])
    sgd.learning_rate = 0.25
    sgd.apply([np.ones(2, np.float32)], [variable])
    np.testing.assert_allclose(variable.value, [-1.25, -1.25])


def test_float_cannot_replace_a_schedule_as_in_keras_but_a_schedule_can():
    opt = optimizers.SGD(learning_rate=schedules.ExponentialDecay(0.1, 1, 0.5))
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.01
    plain = optimizers.SGD(learning_rate=0.1)
    plain.learning_rate = schedules.ExponentialDecay(0.1, 1, 0.5)
    plain.iterations = 2
    assert plain.learning_rate == pytest.approx(0.025)


def test_bad_learning_rate_is_rejected():
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD(learning_rate="fast")


# ----- state -----
STATE_CASES = [("adam", {"amsgrad": True}), ("sgd", {"momentum": 0.9, "nesterov": True}),
               ("rmsprop", {"centered": True, "momentum": 0.3}), ("adagrad", {}), ("adamw", {"clipnorm": 0.5}),
               ("sgd", {})]


@pytest.mark.parametrize("kind,cfg", STATE_CASES, ids=[k for k, _ in STATE_CASES])
def test_state_round_trip_resumes_bit_identically(kind, cfg):
    weights, grad_steps = _problem(steps=5)
    straight = _run(optimizers.get({"class_name": kind, "config": cfg}), weights, grad_steps)

    first = optimizers.get({"class_name": kind, "config": cfg})
    variables = _run(first, weights, grad_steps[:3])
    state = {k: np.array(v) for k, v in first.get_state().items()}
    resumed = optimizers.get({"class_name": kind, "config": cfg})
    resumed.set_state(state)  # before it has seen any variable
    assert resumed.iterations == 3
    for grads in grad_steps[3:]:
        resumed.apply(grads, variables)
    for a, b in zip(straight, variables):
        np.testing.assert_array_equal(a.value, b.value)


def test_state_keys_and_copies():
    weights, grad_steps = _problem(steps=1)
    opt = optimizers.Adam(learning_rate=0.01)
    _run(opt, weights, grad_steps)
    state = opt.get_state()
    assert list(state) == ["iterations", "learning_rate", "momentum/0", "momentum/1", "momentum/2", "velocity/0",
                           "velocity/1", "velocity/2"]
    assert int(state["iterations"]) == 1 and float(state["learning_rate"]) == 0.01
    state["momentum/0"][...] = 123.0  # a copy: the optimizer is unaffected
    assert not np.any(opt.get_state()["momentum/0"] == 123.0)


def test_set_state_on_a_built_optimizer_overwrites_slots_and_learning_rate():
    weights, grad_steps = _problem(steps=2)
    source = optimizers.RMSprop(learning_rate=0.01, momentum=0.5)
    _run(source, weights, grad_steps)
    target = optimizers.RMSprop(learning_rate=0.5, momentum=0.5)
    _run(target, weights, grad_steps[:1])
    target.set_state(source.get_state())
    assert target.learning_rate == 0.01 and target.iterations == 2
    for key, value in source.get_state().items():
        np.testing.assert_array_equal(target.get_state()[key], value)


def test_set_state_rejects_state_of_another_optimizer_or_model():
    weights, grad_steps = _problem(steps=1)
    adam = optimizers.Adam()
    _run(adam, weights, grad_steps)
    with pytest.raises(ValueError, match="different optimizer"):
        optimizers.SGD(momentum=0.9).set_state(adam.get_state())
    other = optimizers.Adam()
    other.set_state(adam.get_state())
    with pytest.raises(ValueError, match="trainable"):
        other.apply([np.zeros((4, 3), np.float32)], [Variable(np.zeros((4, 3)), "only_one")])


# ----- API errors and conveniences -----
def test_apply_gradients_and_apply_without_variables_after_build():
    weights, grad_steps = _problem(steps=2)
    variables = [Variable(w.copy(), name=f"w{i}") for i, w in enumerate(weights)]
    opt = optimizers.SGD(learning_rate=0.1)
    with pytest.raises(ValueError, match="must already be built"):
        opt.apply(grad_steps[0])
    assert opt.apply_gradients(zip(grad_steps[0], variables)) == 1
    opt.apply(grad_steps[1])
    expected = reference_run("sgd", {"learning_rate": 0.1}, weights, grad_steps)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.value, e, rtol=1e-6, atol=1e-7)


def test_unknown_variable_and_bad_shapes_are_clear_errors():
    opt = optimizers.Adam()
    a = Variable(np.zeros(3), "a")
    opt.apply([np.ones(3, np.float32)], [a])
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply([np.ones(3, np.float32)], [Variable(np.zeros(3), "b")])
    with pytest.raises(ValueError, match="does not match"):
        opt.apply([np.ones(4, np.float32)], [a])


def test_none_gradient_skips_its_variable_with_a_warning():
    a, b = Variable(np.zeros(2), "a"), Variable(np.zeros(2), "b")
    opt = optimizers.SGD(learning_rate=1.0)
    with pytest.warns(UserWarning, match="Gradients do not exist"):
        opt.apply([np.ones(2, np.float32), None], [a, b])
    np.testing.assert_array_equal(a.value, [-1, -1])
    np.testing.assert_array_equal(b.value, [0, 0])


def test_keras_defaults_names_and_unsupported_options():
    assert optimizers.SGD().learning_rate == 0.01 and optimizers.SGD().name == "SGD"
    adam = optimizers.get("Adam")
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad, adam.name) == \
        (0.001, 0.9, 0.999, 1e-7, False, "adam")
    assert optimizers.get("adamw").weight_decay == 0.004
    rms = optimizers.get("rmsprop")
    assert (rms.rho, rms.momentum, rms.epsilon, rms.centered) == (0.9, 0.0, 1e-7, False)
    assert optimizers.get("adagrad").initial_accumulator_value == 0.1 and optimizers.get("adagrad").name == "adagrad"
    with pytest.raises(ValueError, match="not recognized"):
        optimizers.Adam(beta_3=0.1)
    with pytest.raises(NotImplementedError, match="use_ema"):
        optimizers.Adam(use_ema=True)
    with pytest.raises(ValueError, match="momentum"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optimizers.get("adamaxx")  # (was "adamax", which tlkit now has)


@pytest.mark.parametrize("opt", [
    optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True, clipnorm=1.0),
    optimizers.AdamW(learning_rate=schedules.CosineDecay(0.0, 100, warmup_target=1e-3, warmup_steps=10)),
    optimizers.RMSprop(centered=True, weight_decay=0.01, name="my_rms"),
    optimizers.Adagrad(learning_rate=schedules.PiecewiseConstantDecay([10], [0.1, 0.01])),
], ids=["sgd", "adamw", "rmsprop", "adagrad"])
def test_serialize_round_trip_through_json(opt):
    config = json.loads(json.dumps(optimizers.serialize(opt)))
    clone = optimizers.deserialize(config)
    assert type(clone) is type(opt) and clone.get_config() == opt.get_config()
    assert optimizers.get(config).get_config() == opt.get_config()
    assert optimizers.get(opt) is opt


def test_adam_kernel_alone_matches_numpy_in_float32():
    rng = np.random.default_rng(0)
    w, g, m, v = (rng.standard_normal(1000).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    expected_m = m + (g - m) * np.float32(0.1)
    expected_v = v + (g * g - v) * np.float32(0.001)
    expected_w = w - (expected_m * np.float32(0.01)) / (np.sqrt(expected_v) + np.float32(1e-7))
    kernels.adam(w, g, m, v, np.zeros(0, np.float32), np.float32(0.01), np.float32(0.1), np.float32(0.001),
                 np.float32(1e-7), False)
    np.testing.assert_allclose(m, expected_m, rtol=1e-6)
    np.testing.assert_allclose(v, expected_v, rtol=1e-6)
    np.testing.assert_allclose(w, expected_w, rtol=1e-6, atol=1e-7)
