"""Keras code that writes its own maths trains: custom layers, add_loss, function and Loss-subclass
losses, optimizer.apply_gradients/apply, Metric subclasses. (The keras-io training loop from scratch
lives in tests/keras_guides/.)"""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit import ops


class Linear(tlkit.layers.Layer):
    """The keras-io subclassing guide's layer: call(self, inputs) without training/mask."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True)
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True)

    def call(self, inputs):
        return ops.matmul(inputs, self.w) + self.b

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)


def separable(rng, n=256, d=6, classes=3):
    centres = rng.standard_normal((classes, d)) * 3
    y = rng.integers(0, classes, n)
    x = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y


def test_custom_layer_trains_in_fit(rng):
    x, y = separable(rng)
    tlkit.engine.random.set_random_seed(0)
    model = tlkit.Sequential([tlkit.Input((6,)), Linear(16), L.Activation("relu"), Linear(3)])
    model.compile(optimizer=tlkit.optimizers.Adam(0.01), loss=tlkit.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert all(not np.allclose(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9


def test_call_gets_training_only_when_declared(rng):
    seen = []

    class WithTraining(tlkit.layers.Layer):
        def call(self, inputs, training=None):
            seen.append(training)
            return inputs

    class WithMask(tlkit.layers.Layer):
        def call(self, inputs, mask=None):
            seen.append(("mask", mask))
            return inputs

    x = np.ones((2, 3), np.float32)
    WithTraining()(x, training=True)
    WithMask()(x, mask="m")
    Linear(2)(x, training=True)  # no training parameter: not passed, no TypeError
    assert seen == [True, ("mask", "m")]


def test_add_loss_is_summed_into_the_training_loss_with_its_gradient(rng):
    class ActivityPenalty(tlkit.layers.Layer):
        def call(self, inputs):
            self.add_loss(0.5 * ops.sum(ops.square(inputs)))
            return inputs

    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = rng.standard_normal((4, 2)).astype(np.float32)
    dense = L.Dense(2)
    model = tlkit.Sequential([tlkit.Input((3,)), dense, ActivityPenalty()])
    model.compile(optimizer=tlkit.optimizers.SGD(0.01), loss="mse")
    k0, b0 = dense.kernel.numpy(), dense.bias.numpy()
    out = x @ k0 + b0
    expected_loss = np.mean((out - y) ** 2) + 0.5 * np.sum(out ** 2)
    loss = model.train_on_batch(x, y)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    dout = 2 * (out - y) / out.size + out
    np.testing.assert_allclose(dense.kernel.numpy(), k0 - 0.01 * x.T @ dout, rtol=1e-4, atol=1e-6)
    assert len(model.losses) == 1  # cleared and re-added on every call, not accumulated
    model(x)
    assert len(model.losses) == 1


def custom_mse(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred), axis=-1)


class SubclassedMSE(tlkit.losses.Loss):
    def call(self, y_true, y_pred):
        return ops.mean(ops.square(y_pred - y_true), axis=-1)


@pytest.mark.parametrize("loss", [custom_mse, SubclassedMSE()], ids=["function", "Loss.call"])
def test_loss_written_with_ops_trains_like_the_built_in(rng, loss):
    x = rng.standard_normal((8, 3)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    sw = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    models = []
    for spec in (loss, "mse"):
        tlkit.engine.random.set_random_seed(1)
        model = tlkit.Sequential([tlkit.Input((3,)), L.Dense(4, activation="tanh"), L.Dense(2)])
        model.compile(optimizer=tlkit.optimizers.SGD(0.1), loss=spec)
        logs = [model.train_on_batch(x, y, sample_weight=sw) for _ in range(3)]
        models.append((model, logs))
    (mine, my_logs), (ref, ref_logs) = models
    np.testing.assert_allclose(my_logs, ref_logs, rtol=1e-5)
    for a, b in zip(mine.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_optimizer_apply_gradients_and_apply():
    v = tlkit.Variable(np.array([1.0, -2.0]), name="v")
    w = tlkit.Variable(np.array([[0.5]]), name="w")
    opt = tlkit.optimizers.SGD(learning_rate=0.1)
    for apply in (lambda g: opt.apply_gradients(zip(g, [v, w])), lambda g: opt.apply(g, [v, w])):
        with tlkit.GradientTape() as tape:
            loss = ops.sum(ops.square(v)) + ops.sum(w * 3.0)
        grads = tape.gradient(loss, [v, w])
        before = v.numpy(), w.numpy()
        apply(grads)
        np.testing.assert_allclose(v.numpy(), before[0] - 0.1 * 2 * before[0], rtol=1e-6)
        np.testing.assert_allclose(w.numpy(), before[1] - 0.3, rtol=1e-6)
    assert opt.iterations == 2


class CategoricalTruePositives(tlkit.metrics.Metric):
    """keras-io "training with built-in methods": a stateful metric with add_variable and ops."""

    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
        values = ops.cast(ops.cast(y_true, "int32") == ops.cast(y_pred, "int32"), "float32")
        if sample_weight is not None:
            values = ops.multiply(values, ops.cast(sample_weight, "float32"))
        self.true_positives.assign_add(ops.sum(values))

    def result(self):
        return self.true_positives.value

    def reset_state(self):
        self.true_positives.assign(0.0)


class PlainCount(tlkit.metrics.Metric):
    def __init__(self, name="seen", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self.add_weight(name="count", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.count.assign_add(float(len(y_true)))

    def result(self):
        return self.count


def test_metric_subclasses_work_in_compile(rng):
    x, y = separable(rng, n=64)
    model = tlkit.Sequential([tlkit.Input((6,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=[CategoricalTruePositives(), PlainCount()])
    history = model.fit(x, y[:, None], batch_size=16, epochs=2, verbose=0)
    assert history.history["seen"] == [64.0, 64.0]  # reset (default reset_state) between epochs
    preds = model.predict(x, verbose=0)
    logs = model.evaluate(x, y[:, None], batch_size=64, verbose=0, return_dict=True)
    assert logs["categorical_true_positives"] == float((preds.argmax(1) == y).sum())

