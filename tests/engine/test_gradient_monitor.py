"""Update norms from the fused optimizer kernels, and GradientMonitor's one warning per problem."""
import warnings

import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.callbacks import GradientMonitor, GradientWarning
from tlkit.engine import optimizers
from tlkit.engine.variable import Variable

OPTIMIZERS = [
    ("SGD", {}), ("SGD", {"momentum": 0.9, "nesterov": True}), ("Adam", {"amsgrad": True}),
    ("RMSprop", {"momentum": 0.5, "centered": True}), ("Adagrad", {}), ("AdamW", {"weight_decay": 0.01}),
]


@pytest.mark.parametrize("kind,cfg", OPTIMIZERS)
def test_kernel_norms_match_numpy_on_the_applied_step(kind, cfg):
    rng = np.random.default_rng(1)
    variables = [Variable(rng.standard_normal(s).astype(np.float32), name=f"v{i}")
                 for i, s in enumerate([(7, 5), (5,), (3, 3, 2, 4)])]
    opt = getattr(optimizers, kind)(learning_rate=0.05, **cfg)
    for _ in range(3):
        grads = [rng.standard_normal(v.shape).astype(np.float32) * 3 for v in variables]
        before = [v.value.copy() for v in variables]
        opt.apply(grads, variables)
        for i, (g, v, w0) in enumerate(zip(grads, variables, before)):
            g_sq, w_sq, u_sq = opt.last_update_norms[i]
            # The update the norm describes excludes decoupled weight decay (applied before the kernel).
            decayed = w0 - w0 * np.float32(0.05 * cfg["weight_decay"]) if "weight_decay" in cfg else w0
            np.testing.assert_allclose(np.sqrt(g_sq), np.linalg.norm(g), rtol=1e-5)
            np.testing.assert_allclose(np.sqrt(w_sq), np.linalg.norm(v.value), rtol=1e-5)
            np.testing.assert_allclose(np.sqrt(u_sq), np.linalg.norm(v.value - decayed), rtol=1e-4, atol=1e-7)
    assert opt.variables == variables


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    return x, (x @ rng.standard_normal((8, 1))).astype(np.float32)


def _fit_recording(model, epochs, batch_size=16, **fit):
    x, y = _data()
    monitor = GradientMonitor()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[monitor], **fit)
    issued = [w for w in caught if issubclass(w.category, GradientWarning)]
    assert [str(w.message) for w in issued] == monitor.warnings
    return monitor, issued


def test_huge_learning_rate_gives_one_exploding_warning_naming_the_layer():
    tlkit.utils.set_random_seed(0)
    hidden = L.Dense(8, activation="relu", name="hidden")
    hidden.trainable = False  # only 'out' trains, so only its gradients can blow up
    model = tlkit.Sequential([tlkit.Input((8,)), hidden, L.Dense(1, name="out")])
    model.compile(optimizer=optimizers.SGD(learning_rate=10.0), loss="mse")
    monitor, issued = _fit_recording(model, epochs=6)
    assert len(issued) == 1
    message = monitor.warnings[0]
    assert "exploding" in message or "not finite" in message
    assert "'out'" in message and "learning rate" in message and "clipnorm" in message and "input scale" in message


def test_deep_sigmoid_stack_gives_one_vanishing_warning_naming_a_bottom_layer():
    tlkit.utils.set_random_seed(0)
    stack = [L.Dense(16, activation="sigmoid", name=f"d{i}") for i in range(12)]
    model = tlkit.Sequential([tlkit.Input((8,))] + stack + [L.Dense(1, name="out")])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.01), loss="mse")
    monitor, issued = _fit_recording(model, epochs=8)
    assert len(issued) == 1
    message = monitor.warnings[0]
    assert "vanishing" in message
    named = message.split("'")[1]
    # Each sigmoid scales the gradient by <= 1/4: the bottom layers get the smallest.
    assert named in ("d0", "d1", "d2"), message
    last = monitor.last_norms
    assert last[named][0] < 1e-5 * max(g for g, _, _ in last.values())
    assert last["out"][0] > 100 * last["d0"][0]


def test_healthy_run_warns_nothing_and_records_norms_per_layer_and_epoch():
    tlkit.utils.set_random_seed(0)
    model = tlkit.Sequential([tlkit.Input((8,)), L.Dense(16, activation="relu", name="a"),
                              L.Dense(16, activation="relu", name="b"), L.Dense(1, name="c")])
    model.compile(optimizer="adam", loss="mse")
    monitor, issued = _fit_recording(model, epochs=20, batch_size=8)
    assert issued == [] and monitor.warnings == []
    assert len(monitor.epoch_norms) == 20 and set(monitor.epoch_norms[0]) == {"a", "b", "c"}
    g, w, ratio = monitor.last_norms["c"]
    kernel, bias = model.get_layer("c").get_weights()
    np.testing.assert_allclose(w, np.sqrt((kernel ** 2).sum() + (bias ** 2).sum()), rtol=1e-5)
    assert 0 < ratio < 1 and g > 0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="explode_factor"):
        GradientMonitor(explode_factor=0.5)


def test_logged_group_norms_are_the_epoch_means_of_the_per_step_norms():
    tlkit.utils.set_random_seed(0)
    model = tlkit.Sequential([tlkit.Input((8,)), L.Dense(6, activation="relu", name="block1_a"),
                              L.Dense(6, activation="relu", name="block1_b"), L.Dense(1, name="top")])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.01), loss="mse")
    per_step = []

    class Record(tlkit.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):  # after the monitor: its per-layer norms of this step
            norms = monitor.last_norms
            per_step.append(np.sqrt(norms["block1_a"][0] ** 2 + norms["block1_b"][0] ** 2))

    monitor = GradientMonitor(log_norms=True, group=lambda name: name.split("_")[0])
    x, y = _data()
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor, Record()]).history
    assert set(history) == {"loss", "grad_norm/block1", "grad_norm/top", "learning_rate"}
    np.testing.assert_allclose(history["grad_norm/block1"], [np.mean(per_step[:4]), np.mean(per_step[4:])],
                               rtol=1e-9)
    assert history["learning_rate"] == [pytest.approx(0.01)] * 2


def test_fused_updates_stay_bit_identical_to_numpy_in_their_documented_order():
    # The kernels vectorise their norm sums with fastmath "reassoc"; the updates must not be regrouped.
    from tlkit.engine.kernels import optim

    rng = np.random.default_rng(3)
    f = np.float32
    w, g, m, v, a = (rng.standard_normal(10_007).astype(f) for _ in range(5))
    v, a = np.abs(v), a * f(0.01)  # a small average gradient keeps centered RMSprop's root real
    lr, c1, c2, eps = f(1e-2), f(0.1), f(0.001), f(1e-7)

    kw, km, kv = w.copy(), m.copy(), v.copy()
    optim.adam(kw, g, km, kv, np.zeros(0, f), lr, c1, c2, eps, False)
    rm, rv = m + (g - m) * c1, v + (g * g - v) * c2
    assert np.array_equal(km, rm) and np.array_equal(kv, rv)
    assert np.array_equal(kw, w - (rm * lr) / (np.sqrt(rv) + eps))

    kw, kvel = w.copy(), m.copy()
    optim.sgd_momentum(kw, g, kvel, lr, f(0.9), True)
    vel = m * f(0.9) - g * lr
    assert np.array_equal(kvel, vel) and np.array_equal(kw, w + (vel * f(0.9) - g * lr))

    kw, kvel, kavg, kmom = w.copy(), v.copy(), a.copy(), m.copy()
    optim.rmsprop(kw, g, kvel, kavg, kmom, lr, f(0.9), f(0.1), f(0.5), eps, True)
    vel = f(0.9) * v + f(0.1) * (g * g)
    avg = f(0.9) * a + f(0.1) * g
    mom = f(0.5) * m + (lr * g) / np.sqrt(vel - avg * avg + eps)
    assert np.array_equal(kavg, avg) and np.array_equal(kmom, mom)
    assert np.array_equal(kw, w - mom)

    kw, kacc = w.copy(), v.copy()
    optim.adagrad(kw, g, kacc, lr, eps)
    acc = v + g * g
    assert np.array_equal(kacc, acc) and np.array_equal(kw, w - (lr * g) / np.sqrt(acc + eps))
