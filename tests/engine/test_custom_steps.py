"""Model.train_step / test_step / predict_step overrides: what fit, evaluate, predict and the *_on_batch
methods hand them, and that a model that overrides nothing keeps the fused built-in step."""
import numpy as np
import pytest

import tlkit
from tlkit.engine.step_api import StepAPI


def dense_model(model_class=tlkit.Model, seed=0, **dense_kwargs):
    tlkit.utils.set_random_seed(seed)
    inputs = tlkit.Input((4,))
    return model_class(inputs, tlkit.layers.Dense(2, **dense_kwargs)(inputs))


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, x[:, :2] * 2.0 - 1.0


def test_a_model_that_overrides_nothing_runs_the_fused_step(monkeypatch):
    def refuse(self, data):
        raise AssertionError("fit repacked the batch through train_step")
    monkeypatch.setattr(StepAPI, "train_step", refuse)
    monkeypatch.setattr(StepAPI, "test_step", refuse)
    model = dense_model()
    model.compile(optimizer="sgd", loss="mse")
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)


def test_super_train_step_is_the_built_in_step():
    calls = []

    class Counting(tlkit.Model):
        def train_step(self, data):
            calls.append(type(data))
            return super().train_step(data)

        def test_step(self, data):
            calls.append("test")
            return super().test_step(data)

    x, y = data()
    custom, plain = dense_model(Counting), dense_model()
    for model in (custom, plain):
        model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    h_custom = custom.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    h_plain = plain.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    assert calls == [tuple] * 8
    for a, b in zip(custom.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert h_custom.keys() == h_plain.keys()
    np.testing.assert_allclose(h_custom["loss"], h_plain["loss"], rtol=1e-5)
    assert custom.evaluate(x, y, batch_size=32, verbose=0) == pytest.approx(
        plain.evaluate(x, y, batch_size=32, verbose=0), rel=1e-5)
    assert calls[-2:] == ["test", "test"]


def test_step_data_is_packed_as_keras_packs_it():
    seen = []

    class Recording(tlkit.Model):
        def train_step(self, data):
            seen.append(data)
            return {"n": len(data[0]) if isinstance(data, tuple) else len(data)}

    model = dense_model(Recording)
    model.compile(optimizer="sgd")
    x, y = data(8)
    sw = np.ones(8, np.float32)
    model.fit(x, epochs=1, batch_size=8, verbose=0)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.fit(x, y, sample_weight=sw, epochs=1, batch_size=8, verbose=0)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert isinstance(seen[0], np.ndarray)  # x alone, not a 1-tuple
    assert [len(d) for d in seen[1:]] == [2, 3, 2]
    np.testing.assert_array_equal(seen[2][2], sw)
    assert logs == {"n": 8.0}


def test_predict_step_override_is_used_by_predict():
    class Doubling(tlkit.Model):
        def predict_step(self, data):
            return self(data, training=False) * 2.0

    x, _ = data(10)
    model = dense_model(Doubling)
    plain = model(x, training=False)
    np.testing.assert_allclose(model.predict(x, batch_size=4, verbose=0), 2.0 * np.asarray(plain), rtol=1e-6)


def test_metrics_lists_trackers_compile_metrics_and_attribute_metrics():
    class WithTracker(tlkit.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra_tracker = tlkit.metrics.Mean(name="extra")

    inputs = tlkit.Input((4,))
    model = WithTracker(inputs, tlkit.layers.Dense(2)(inputs))
    assert [m.name for m in model.metrics] == ["extra"]  # not compiled: only its own
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    assert [m.name for m in model.metrics] == ["loss", "compile_metrics", "extra"]
    x, y = data(8)
    pred = model.predict(x, verbose=0)
    model.compiled_metrics.update_state(y, pred)
    assert model.compiled_metrics.result() == {"mae": pytest.approx(np.mean(np.abs(y - pred)), rel=1e-5)}
    model.extra_tracker.update_state(3.0)
    model.reset_metrics()
    assert model.extra_tracker.count == 0.0 and model.compiled_metrics.result() == {"mae": 0.0}


def test_compute_loss_adds_weight_penalties_and_added_losses_with_their_gradients():
    model = dense_model(kernel_regularizer=tlkit.regularizers.L2(0.1))
    model.compile(optimizer="sgd", loss="mse")
    x, y = data(16)
    kernel = model.layers[-1].kernel
    with tlkit.GradientTape() as tape:
        pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=pred)
    grad = tape.gradient(loss, kernel)
    # Reference: numpy of the same maths.
    w, b = kernel.numpy(), model.layers[-1].bias.numpy()
    err = x @ w + b - y
    expected_loss = np.mean(err ** 2) + 0.1 * np.sum(w ** 2)
    expected_grad = x.T @ (2.0 * err / err.size) + 0.2 * w
    assert float(loss) == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_compute_loss_without_any_loss_says_what_to_do():
    model = dense_model()
    model.compile(optimizer="sgd")
    x, y = data(4)
    with pytest.raises(ValueError, match="pass `loss=` to compile"):
        model.compute_loss(x=x, y=y, y_pred=model(x))
