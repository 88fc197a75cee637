"""Adadelta, Adamax, Nadam, Ftrl and Lion: Keras 3's update rules against a float64 numpy reference of
Keras's formulas (always), torch's optimizers where torch has them, and Keras itself when installed."""
import json
import os
import subprocess

import numpy as np
import pytest

from tlkit.engine import optimizers
from tlkit.engine.variable import Variable

from test_optimizers import _problem
from test_optimizers import _run as _run_variables

PEERS_PYTHON = os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python")


def _run(opt, weights, grad_steps):
    return [v.numpy() for v in _run_variables(opt, weights, grad_steps)]


def reference(kind, cfg, w, grads):
    """One weight array through every step, float64, written from Keras 3's update_step formulas."""
    w = w.astype(np.float64)
    lr = cfg.get("learning_rate", 0.001)
    s = {}
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if kind == "adadelta":
            rho, eps = cfg.get("rho", 0.95), cfg.get("epsilon", 1e-7)
            s["ag"] = rho * s.get("ag", 0) + (1 - rho) * g ** 2
            delta = -np.sqrt(s.get("ad", 0) + eps) * g / np.sqrt(s["ag"] + eps)
            s["ad"] = rho * s.get("ad", 0) + (1 - rho) * delta ** 2
            w = w + lr * delta
        elif kind == "adamax":
            b1, b2, eps = cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.999), cfg.get("epsilon", 1e-7)
            s["m"] = s.get("m", 0) + (g - s.get("m", 0)) * (1 - b1)
            s["u"] = np.maximum(b2 * s.get("u", 0), np.abs(g))
            w = w - lr * s["m"] / ((1 - b1 ** t) * (s["u"] + eps))
        elif kind == "nadam":
            b1, b2, eps = cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.999), cfg.get("epsilon", 1e-7)
            mu = lambda step: b1 * (1 - 0.5 * 0.96 ** step)  # noqa: E731  (Keras 3: no 0.004 factor)
            s["p"] = s.get("p", 1.0) * mu(t)
            s["m"] = s.get("m", 0) + (g - s.get("m", 0)) * (1 - b1)
            s["v"] = s.get("v", 0) + (g ** 2 - s.get("v", 0)) * (1 - b2)
            m_hat = mu(t + 1) * s["m"] / (1 - s["p"] * mu(t + 1)) + (1 - mu(t)) * g / (1 - s["p"])
            w = w - lr * m_hat / (np.sqrt(s["v"] / (1 - b2 ** t)) + eps)
        elif kind == "ftrl":
            p = -cfg.get("learning_rate_power", -0.5)
            l1 = cfg.get("l1_regularization_strength", 0.0)
            l2 = cfg.get("l2_regularization_strength", 0.0) + cfg.get("beta", 0.0) / (2 * lr)
            acc = s.get("acc", cfg.get("initial_accumulator_value", 0.1))
            g2 = g + 2 * cfg.get("l2_shrinkage_regularization_strength", 0.0) * w
            new = acc + g ** 2
            s["lin"] = s.get("lin", 0) + g2 - (new ** p - acc ** p) / lr * w
            w = (np.clip(s["lin"], -l1, l1) - s["lin"]) / (new ** p / lr + 2 * l2)
            s["acc"] = new
        elif kind == "lion":
            b1, b2 = cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.99)
            w = w - lr * np.sign(s.get("m", 0) * b1 + g * (1 - b1))
            s["m"] = s.get("m", 0) * b2 + g * (1 - b2)
    return w


CASES = [
    ("adadelta", {}), ("adadelta", {"learning_rate": 1.0, "rho": 0.9}),
    ("adamax", {}), ("adamax", {"learning_rate": 0.01, "beta_1": 0.5}),
    ("nadam", {}), ("nadam", {"learning_rate": 0.01, "beta_2": 0.9}),
    ("ftrl", {}), ("ftrl", {"learning_rate": 0.1, "l1_regularization_strength": 0.01,
                            "l2_regularization_strength": 0.02, "l2_shrinkage_regularization_strength": 0.05,
                            "beta": 0.1, "learning_rate_power": -0.7}),
    ("lion", {}), ("lion", {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9}),
]
IDS = [f"{k}-{'-'.join(c) or 'default'}" for k, c in CASES]


@pytest.mark.parametrize("kind,cfg", CASES, ids=IDS)
def test_matches_numpy_reference_of_keras_formulas(kind, cfg):
    weights, grad_steps = _problem(scale=3.0)
    got = _run(optimizers.get({"class_name": kind, "config": cfg}), weights, grad_steps)
    for i, (w, value) in enumerate(zip(weights, got)):
        expected = reference(kind, cfg, w, [g[i] for g in grad_steps])
        np.testing.assert_allclose(value, expected, rtol=2e-5, atol=2e-6)
        assert np.abs(value - w).max() > 1e-6  # the weights really moved (Adadelta at lr 1e-3 barely does)


@pytest.mark.parametrize("kind,cfg", CASES[::2], ids=IDS[::2])
def test_state_round_trip_resumes_identically(kind, cfg):
    weights, grad_steps = _problem()
    straight = _run(optimizers.get({"class_name": kind, "config": cfg}), weights, grad_steps)
    first = optimizers.get({"class_name": kind, "config": cfg})
    variables = [Variable(w.copy(), name=f"layer/w{i}") for i, w in enumerate(weights)]
    for grads in grad_steps[:3]:
        first.apply(grads, variables)
    resumed = optimizers.get({"class_name": kind, "config": cfg})
    resumed.set_state({k: np.array(v) for k, v in first.get_state().items()})
    for grads in grad_steps[3:]:
        resumed.apply(grads, variables)
    for a, b in zip(straight, variables):
        np.testing.assert_allclose(a, b.value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind,cfg", CASES, ids=IDS)
def test_serialize_round_trip(kind, cfg):
    opt = optimizers.get({"class_name": kind, "config": cfg})
    again = optimizers.deserialize(json.loads(json.dumps(optimizers.serialize(opt))))
    assert type(again) is type(opt) and again.get_config() == opt.get_config()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="beta_1"):
        optimizers.Lion(beta_1=0.0)
    with pytest.raises(ValueError, match="l1_regularization_strength"):
        optimizers.Ftrl(l1_regularization_strength=-1)
    with pytest.raises(ValueError, match="learning_rate_power"):
        optimizers.Ftrl(learning_rate_power=0.5)


@pytest.mark.parametrize("kind, cfg, torch_name, torch_cfg", [
    ("adadelta", {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6}, "Adadelta", {"lr": 1.0, "rho": 0.9, "eps": 1e-6}),
    # torch's momentum_decay=1 gives Keras 3's schedule 0.96 ** t (torch's default 4e-3 is Keras 2's)
    ("nadam", {"learning_rate": 0.01, "epsilon": 1e-7}, "NAdam", {"lr": 0.01, "eps": 1e-7, "momentum_decay": 1.0}),
    # torch adds epsilon inside the max (max(b2 u, |g| + eps)), Keras after it: equal while |g| >> eps.
    ("adamax", {"learning_rate": 0.01}, "Adamax", {"lr": 0.01, "eps": 1e-7}),
])
def test_matches_torch(kind, cfg, torch_name, torch_cfg):
    torch = pytest.importorskip("torch")
    weights, grad_steps = _problem(scale=2.0)
    got = _run(optimizers.get({"class_name": kind, "config": cfg}), weights, grad_steps)
    params = [torch.tensor(w.copy(), requires_grad=True) for w in weights]
    opt = getattr(torch.optim, torch_name)(params, **torch_cfg)
    for grads in grad_steps:
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
    for value, p in zip(got, params):
        np.testing.assert_allclose(value, p.detach().numpy(), rtol=1e-4, atol=1e-6)


KERAS_SIDE = r'''
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
data = np.load(sys.argv[1])
cases = json.loads(sys.argv[3])
out = {}
for n, (kind, cfg) in enumerate(cases):
    opt = keras.optimizers.get({"class_name": kind, "config": cfg})
    variables = [keras.Variable(data[f"w{i}"]) for i in range(3)]
    for step in range(int(data["steps"])):
        opt.apply([data[f"g{step}_{i}"] for i in range(3)], variables)
    for i, v in enumerate(variables):
        out[f"case{n}_{i}"] = np.asarray(v)
np.savez(sys.argv[2], **out)
'''


def test_matches_keras(tmp_path):
    if not os.path.exists(PEERS_PYTHON):
        pytest.skip(f"no Keras: {PEERS_PYTHON} is absent")
    weights, grad_steps = _problem(scale=3.0)
    arrays = {f"w{i}": w for i, w in enumerate(weights)}
    arrays.update({f"g{s}_{i}": g for s, grads in enumerate(grad_steps) for i, g in enumerate(grads)})
    arrays["steps"] = len(grad_steps)
    np.savez(tmp_path / "in.npz", **arrays)
    names = {"adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam", "ftrl": "Ftrl", "lion": "Lion"}
    cases = [(names[k], c) for k, c in CASES]
    script = tmp_path / "keras_side.py"
    script.write_text(KERAS_SIDE)
    done = subprocess.run([PEERS_PYTHON, str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"),
                           json.dumps(cases)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")
    for n, (kind, cfg) in enumerate(CASES):
        got = _run(optimizers.get({"class_name": kind, "config": cfg}), weights, grad_steps)
        for i, value in enumerate(got):
            np.testing.assert_allclose(value, theirs[f"case{n}_{i}"], rtol=1e-4, atol=1e-6, err_msg=f"{kind} {cfg}")
