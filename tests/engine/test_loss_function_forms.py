"""Built-in loss functions (``losses.mean_squared_error(y, y_pred)``...) are differentiable inside a
GradientTape, as the Keras 2 edition of the customizing-fit guide uses them; outside one they stay numpy."""
import numpy as np
import pytest

import tlkit
from tlkit import losses, ops


def cases(rng):
    probs = rng.dirichlet(np.ones(4), size=6)
    onehot = np.eye(4)[rng.integers(0, 4, 6)]
    return [
        ("mean_squared_error", rng.standard_normal((6, 3)), rng.standard_normal((6, 3)), {}),
        ("mean_absolute_error", rng.standard_normal((6, 3)), rng.standard_normal((6, 3)), {}),
        ("huber", rng.standard_normal((6, 3)) * 2, rng.standard_normal((6, 3)), {"delta": 0.7}),
        ("categorical_crossentropy", onehot, probs, {}),
        ("categorical_crossentropy", onehot, rng.standard_normal((6, 4)), {"from_logits": True,
                                                                           "label_smoothing": 0.1}),
        ("sparse_categorical_crossentropy", onehot.argmax(1), rng.standard_normal((6, 4)), {"from_logits": True}),
        ("binary_crossentropy", rng.integers(0, 2, (6, 2)).astype(float), rng.uniform(0.1, 0.9, (6, 2)), {}),
    ]


@pytest.mark.parametrize("index", range(7))
def test_function_form_gradient_matches_finite_differences(index):
    rng = np.random.default_rng(index)
    name, y_true, y_pred, kwargs = cases(rng)[index]
    fn = getattr(losses, name)
    weights = rng.standard_normal(len(y_pred))  # a non-uniform upstream gradient per sample

    def total(pred):
        return float(np.sum(np.asarray(fn(y_true, pred, **kwargs), np.float64) * weights))

    with tlkit.GradientTape() as tape:
        tape.watch(y_pred)
        values = fn(y_true, y_pred, **kwargs)
        loss = ops.sum(ops.multiply(values, weights))
    grad = tape.gradient(loss, y_pred)
    np.testing.assert_allclose(values, fn(y_true, y_pred, **kwargs), rtol=1e-6)  # same values either way
    eps = 1e-3  # the function forms report float32: smaller steps drown in rounding
    numeric = np.zeros_like(y_pred)
    for i in np.ndindex(y_pred.shape):
        up, down = y_pred.copy(), y_pred.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (total(up) - total(down)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=5e-3, atol=5e-4)


def test_outside_a_tape_the_function_form_is_plain_numpy():
    out = losses.mean_squared_error(np.zeros((2, 3)), np.ones((2, 3)))
    assert type(out) is np.ndarray and out.dtype == np.float32
    np.testing.assert_allclose(out, [1.0, 1.0])


def test_function_forms_still_name_their_class_in_compile():
    assert type(losses.get(losses.mean_squared_error)).__name__ == "MeanSquaredError"
    assert losses.serialize(losses.binary_crossentropy) == "binary_crossentropy"


def test_keras2_lower_level_train_step_with_a_function_loss():
    """The Keras 2 guide's "going lower-level": keras.losses.mean_squared_error inside train_step."""
    loss_tracker = tlkit.metrics.Mean(name="loss")

    class CustomModel(tlkit.Model):
        def train_step(self, data):
            x, y = data
            with tlkit.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = tlkit.losses.mean_squared_error(y, y_pred)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
            loss_tracker.update_state(loss)
            return {"loss": loss_tracker.result()}

        @property
        def metrics(self):
            return [loss_tracker]

    rng = np.random.default_rng(0)
    x = rng.random((128, 8))
    y = x @ rng.normal(size=(8, 1))
    inputs = tlkit.Input((8,))
    model = CustomModel(inputs, tlkit.layers.Dense(1)(inputs))
    model.compile(optimizer="adam")
    loss = model.fit(x, y, epochs=4, verbose=0).history["loss"]
    assert all(b < a for a, b in zip(loss, loss[1:]))
