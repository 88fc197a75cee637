"""MeanAbsolutePercentageError, MeanSquaredLogarithmicError, CosineSimilarity, LogCosh, Poisson,
KLDivergence, Hinge, SquaredHinge, CategoricalHinge: values against numpy references of Keras 3's
formulas (always), gradients against finite differences, torch where it has the loss, Keras itself
when installed; the function forms, names, configs and the matching metrics."""
import json
import os
import subprocess

import numpy as np
import pytest

import tlkit
from tlkit.engine import losses, metrics

PEERS_PYTHON = os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python")
EPS = 1e-7


def _unit(x):
    return x / np.sqrt(np.maximum((x * x).sum(-1, keepdims=True), EPS))


def _signed(y):
    return 2 * y - 1 if np.all((y == 0) | (y == 1)) else y


# Per-sample float64 references, written from Keras 3's loss functions.
REFERENCES = {
    "mean_absolute_percentage_error": lambda y, p: 100 * np.mean(np.abs((y - p) / np.maximum(np.abs(y), EPS)), -1),
    "mean_squared_logarithmic_error": lambda y, p: np.mean(
        (np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(y, EPS) + 1)) ** 2, -1),
    "cosine_similarity": lambda y, p: -np.sum(_unit(y) * _unit(p), -1),
    "log_cosh": lambda y, p: np.mean(np.log(np.cosh(p - y)), -1),
    "poisson": lambda y, p: np.mean(p - y * np.log(p + EPS), -1),
    "kl_divergence": lambda y, p: np.sum(np.clip(y, EPS, 1) * np.log(np.clip(y, EPS, 1) / np.clip(p, EPS, 1)), -1),
    "hinge": lambda y, p: np.mean(np.maximum(1 - _signed(y) * p, 0), -1),
    "squared_hinge": lambda y, p: np.mean(np.maximum(1 - _signed(y) * p, 0) ** 2, -1),
    "categorical_hinge": lambda y, p: np.maximum(np.max((1 - y) * p, -1) - np.sum(y * p, -1) + 1, 0),
}
CLASSES = {
    "mean_absolute_percentage_error": losses.MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": losses.MeanSquaredLogarithmicError,
    "cosine_similarity": losses.CosineSimilarity, "log_cosh": losses.LogCosh, "poisson": losses.Poisson,
    "kl_divergence": losses.KLDivergence, "hinge": losses.Hinge, "squared_hinge": losses.SquaredHinge,
    "categorical_hinge": losses.CategoricalHinge,
}


def _data(name, rng, n=6, k=5):
    """Labels and predictions in each loss's domain, away from kinks (|margin - 1| and clip edges)."""
    if name in ("hinge", "squared_hinge"):
        y = rng.integers(0, 2, (n, k)).astype(np.float32)
        p = rng.uniform(-2, 2, (n, k)).astype(np.float32)
        p[np.abs(1 - (2 * y - 1) * p) < 0.05] += 0.2
    elif name == "categorical_hinge":
        y = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
        p = rng.uniform(-1, 1, (n, k)).astype(np.float32) + 0.37 * np.arange(k)  # distinct "others" maxima
    elif name == "kl_divergence":
        y = rng.dirichlet(np.ones(k), n).astype(np.float32)
        p = rng.dirichlet(np.ones(k), n).astype(np.float32)
    elif name in ("poisson", "mean_squared_logarithmic_error"):
        y = rng.uniform(0, 3, (n, k)).astype(np.float32)
        p = rng.uniform(0.1, 3, (n, k)).astype(np.float32)
    else:
        y = rng.standard_normal((n, k)).astype(np.float32)
        p = rng.standard_normal((n, k)).astype(np.float32)
    if name == "mean_absolute_percentage_error":
        p[np.abs(p - y) < 0.05] += 0.2
    return y, p


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_values_match_keras_formulas(rng, name):
    y, p = _data(name, rng)
    expected = REFERENCES[name](y.astype(np.float64), p.astype(np.float64))
    np.testing.assert_allclose(getattr(losses, name)(y, p), expected, rtol=1e-5, atol=1e-6)
    loss = CLASSES[name]()
    assert loss.name == name and losses.get(name).name == name
    assert loss(y, p) == pytest.approx(expected.mean(), rel=1e-5, abs=1e-6)
    weights = rng.uniform(0, 2, len(y))
    assert loss(y, p, sample_weight=weights) == pytest.approx((expected * weights).mean(), rel=1e-5, abs=1e-6)
    again = losses.deserialize(json.loads(json.dumps(losses.serialize(loss))))
    assert type(again) is type(loss) and again.get_config() == loss.get_config()


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_gradients_match_finite_differences(rng, name):
    y, p = _data(name, rng)
    loss = CLASSES[name]()
    weights = rng.uniform(0.5, 2, len(y))
    _, grad = loss.value_and_grad(y, p, sample_weight=weights)
    p64 = p.astype(np.float64)
    numeric = np.zeros_like(p64)
    h = 1e-4
    for idx in np.ndindex(*p.shape):
        up, down = p64.copy(), p64.copy()
        up[idx] += h
        down[idx] -= h
        f = lambda q: float((REFERENCES[name](y.astype(np.float64), q) * weights).mean())  # noqa: E731
        numeric[idx] = (f(up) - f(down)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)


def test_aliases_and_rank_alignment(rng):
    for alias, cls in (("mape", losses.MeanAbsolutePercentageError), ("msle", losses.MeanSquaredLogarithmicError),
                       ("kld", losses.KLDivergence), ("logcosh", losses.LogCosh)):
        assert isinstance(losses.get(alias), cls)
    y = rng.uniform(1, 2, 5).astype(np.float32)
    p = rng.uniform(1, 2, (5, 1)).astype(np.float32)
    np.testing.assert_allclose(losses.mean_absolute_percentage_error(y, p),
                               100 * np.abs((y - p[:, 0]) / y), rtol=1e-5)


def test_matching_metrics(rng):
    for name, cls in [("mean_absolute_percentage_error", metrics.MeanAbsolutePercentageError),
                      ("mean_squared_logarithmic_error", metrics.MeanSquaredLogarithmicError),
                      ("log_cosh", metrics.LogCoshError), ("poisson", metrics.Poisson),
                      ("kl_divergence", metrics.KLDivergence), ("hinge", metrics.Hinge),
                      ("squared_hinge", metrics.SquaredHinge), ("categorical_hinge", metrics.CategoricalHinge)]:
        m = cls()
        y, p = _data(name, rng)
        m.update_state(y[:3], p[:3])
        m.update_state(y[3:], p[3:])
        assert m.result() == pytest.approx(REFERENCES[name](y.astype(np.float64), p.astype(np.float64)).mean(),
                                           rel=1e-5)
        assert type(metrics.deserialize(metrics.serialize(m))) is cls
    m = metrics.CosineSimilarity(axis=-1)
    y, p = _data("cosine_similarity", rng)
    m.update_state(y, p)
    assert m.result() == pytest.approx(-REFERENCES["cosine_similarity"](y, p).mean(), rel=1e-5)  # + similarity
    assert metrics.get("logcosh").name == "logcosh" and isinstance(metrics.get("mape"),
                                                                    metrics.MeanAbsolutePercentageError)


def test_trains_with_the_new_losses(rng):
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x @ rng.standard_normal((4, 3)) > 0).astype(np.float32)
    for loss in ("squared_hinge", losses.CosineSimilarity(), "logcosh"):
        model = tlkit.Sequential([tlkit.Input((4,)), tlkit.layers.Dense(3)])
        model.compile(optimizer=tlkit.optimizers.Adam(0.05), loss=loss, metrics=["mape"])
        history = model.fit(x, y, epochs=15, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]


def test_matches_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    cases = {
        "kl_divergence": lambda y, p: F.kl_div(torch.log(p), y, reduction="none").sum(-1),
        "poisson": lambda y, p: F.poisson_nll_loss(p, y, log_input=False, eps=EPS, reduction="none").mean(-1),
        "cosine_similarity": lambda y, p: -F.cosine_similarity(y, p, dim=-1),
        "log_cosh": lambda y, p: torch.log(torch.cosh(p - y)).mean(-1),
        "hinge": lambda y, p: torch.clamp(1 - (2 * y - 1) * p, min=0).mean(-1),
    }
    for name, reference in cases.items():
        y, p = _data(name, rng)
        pt = torch.tensor(p.astype(np.float64), requires_grad=True)
        value = reference(torch.tensor(y.astype(np.float64)), pt).mean()
        value.backward()
        ours, grad = CLASSES[name]().value_and_grad(y, p)
        assert ours == pytest.approx(value.item(), rel=1e-5), name
        np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


KERAS_SIDE = r'''
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
data = np.load(sys.argv[1])
out = {}
for name in json.loads(sys.argv[3]):
    y, p = data["y_" + name], data["p_" + name]
    out["loss_" + name] = np.asarray(getattr(keras.losses, name)(y, p))
    metric = {"log_cosh": "LogCoshError", "cosine_similarity": "CosineSimilarity"}.get(name)
    cls = getattr(keras.metrics, metric or "".join(w.upper() if w in ("kl",) else w.capitalize()
                                                   for w in name.split("_")).replace("Kl", "KL"))
    m = cls()
    m.update_state(y, p)
    out["metric_" + name] = np.asarray(m.result())
np.savez(sys.argv[2], **out)
'''


def test_matches_keras(tmp_path, rng):
    if not os.path.exists(PEERS_PYTHON):
        pytest.skip(f"no Keras: {PEERS_PYTHON} is absent")
    arrays = {}
    for name in REFERENCES:
        arrays["y_" + name], arrays["p_" + name] = _data(name, rng)
    np.savez(tmp_path / "in.npz", **arrays)
    script = tmp_path / "keras_side.py"
    script.write_text(KERAS_SIDE)
    done = subprocess.run([PEERS_PYTHON, str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"),
                           json.dumps(sorted(REFERENCES))], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")
    metric_classes = {"log_cosh": metrics.LogCoshError, "cosine_similarity": metrics.CosineSimilarity,
                      "mean_absolute_percentage_error": metrics.MeanAbsolutePercentageError,
                      "mean_squared_logarithmic_error": metrics.MeanSquaredLogarithmicError,
                      "poisson": metrics.Poisson, "kl_divergence": metrics.KLDivergence, "hinge": metrics.Hinge,
                      "squared_hinge": metrics.SquaredHinge, "categorical_hinge": metrics.CategoricalHinge}
    for name in REFERENCES:
        y, p = arrays["y_" + name], arrays["p_" + name]
        np.testing.assert_allclose(getattr(losses, name)(y, p), theirs["loss_" + name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
        m = metric_classes[name]()
        m.update_state(y, p)
        assert m.result() == pytest.approx(float(theirs["metric_" + name]), rel=1e-5, abs=1e-6), name
