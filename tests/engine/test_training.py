"""fit / evaluate / predict end to end: learning, multi-input/output, determinism."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L


def tiny_cnn(num_classes=3, size=8):
    return tlkit.Sequential([
        tlkit.Input((size, size, 1)),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.GlobalAveragePooling2D(),
        L.Dense(num_classes, activation="softmax"),
    ])


def pattern_images(rng, n=48, size=8, num_classes=3):
    """Each class is a bright bar in a different place (row, column or diagonal) plus noise."""
    y = np.arange(n) % num_classes
    x = rng.normal(0, 0.3, (n, size, size, 1)).astype(np.float32)
    for i, c in enumerate(y):
        if c == 0:
            x[i, size // 2, :, 0] += 2
        elif c == 1:
            x[i, :, size // 2, 0] += 2
        else:
            x[i, np.arange(size), np.arange(size), 0] += 2
    return x, y


def test_tiny_cnn_overfits_small_image_set(rng):
    x, y = pattern_images(rng)
    model = tiny_cnn()
    model.compile(tlkit.optimizers.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=60, verbose=0)
    assert history.history["accuracy"][-1] == 1.0
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc == 1.0
    np.testing.assert_array_equal(model.predict(x, batch_size=7, verbose=0).argmax(1), y)


def test_two_inputs_two_outputs_with_loss_weights(rng):
    image = tlkit.Input((6, 6, 2), name="image")
    extra = tlkit.Input((3,), name="extra")
    features = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, padding="same", activation="relu")(image))
    merged = L.Concatenate()([features, L.Dense(4, activation="relu")(extra)])
    cls = L.Dense(2, activation="softmax", name="cls")(merged)
    reg = L.Dense(1, name="reg")(merged)
    model = tlkit.Model([image, extra], [cls, reg])
    model.compile(tlkit.optimizers.Adam(0.02), loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                  metrics={"cls": "accuracy"})
    xi = rng.standard_normal((32, 6, 6, 2)).astype(np.float32)
    xe = rng.standard_normal((32, 3)).astype(np.float32)
    label = (xe[:, 0] > 0).astype(int)
    y_cls = np.eye(2, dtype=np.float32)[label]
    y_reg = xi.mean(axis=(1, 2, 3))[:, None] + xe[:, 1:2]
    history = model.fit({"image": xi, "extra": xe}, [y_cls, y_reg], batch_size=8, epochs=30, verbose=0)
    h = history.history
    assert {"loss", "cls_loss", "reg_loss", "cls_accuracy"} <= set(h)
    # The total is the weighted sum of the parts (the per-epoch means are averages of per-batch values).
    np.testing.assert_allclose(h["loss"], np.array(h["cls_loss"]) + 0.5 * np.array(h["reg_loss"]), rtol=1e-4)
    assert h["loss"][-1] < h["loss"][0] * 0.5
    assert h["cls_accuracy"][-1] >= 0.9
    logs = model.evaluate([xi, xe], [y_cls, y_reg], verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], logs["cls_loss"] + 0.5 * logs["reg_loss"], rtol=1e-4)


def _train_once(x, y, seed):
    tlkit.utils.set_random_seed(seed)
    model = tlkit.Sequential([tlkit.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                              L.Dropout(0.3), L.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=3, validation_split=0.25, verbose=0)
    return history.history, model.get_weights()


def test_set_random_seed_makes_fit_reproducible(rng):
    x, y = pattern_images(rng, n=32)
    h1, w1 = _train_once(x, y, 7)
    h2, w2 = _train_once(x, y, 7)
    h3, w3 = _train_once(x, y, 8)
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(w1, w3))


def test_fit_from_batch_iterator_with_sample_weights(rng):
    x, y = pattern_images(rng, n=24)

    def batches():
        while True:
            for i in range(0, 24, 8):
                yield x[i:i + 8], y[i:i + 8], np.ones(8, np.float32)

    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(batches(), steps_per_epoch=3, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and history.epoch == [0, 1]


def test_zero_sample_weight_means_no_update(rng):
    x, y = pattern_images(rng, n=8)
    model = tiny_cnn()
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = model.get_weights()
    model.fit(x, y, sample_weight=np.zeros(8), epochs=1, batch_size=8, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_progress_bar_shows_steps_and_metrics(rng, capsys):
    x, y = pattern_images(rng, n=16)
    model = tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=8, epochs=2, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "2/2" in out and "accuracy:" in out and "loss:" in out
    model.fit(x, y, batch_size=8, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert out.count("Epoch") == 2 and "loss:" in out


def test_keras_training_step_parity(rng):
    """One SGD step on the same weights and data gives the same weights as TensorFlow-Keras."""
    keras = pytest.importorskip("keras")
    x, y = pattern_images(rng, n=8)
    model = tiny_cnn()
    km = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                           keras.layers.MaxPooling2D(), keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    km.set_weights(model.get_weights())
    model.compile(tlkit.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    km.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    for _ in range(2):
        model.train_on_batch(x, y)
        km.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
