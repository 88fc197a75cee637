"""keras-io "Training & evaluation with the built-in methods" (guides/training_with_built_in_methods.py, Keras 3)
ported to tlkit.

The guide's code is kept as written; what a port changes:
- ``import keras`` / ``from keras import layers, ops`` -> ``import tlkit as keras`` / ``from tlkit import layers, ops``;
- MNIST becomes small random arrays with a learnable label, and epochs are kept few; ``verbose=0`` keeps the
  log quiet;
- ``tf.data.Dataset.from_tensor_slices(...).shuffle(...).batch(...)`` is TensorFlow's: the ``tf`` below is a
  stand-in of this test (a re-iterable of batches, what fit takes from any loader); the PyDataset and PyTorch
  DataLoader sections run as written (the latter when torch is installed);
- checkpoints and logs go to pytest's temporary folder.
Each section ends with checks that the numbers are sane."""
import os
import types

import numpy as np
import pytest

import tlkit as keras
from tests.keras_guides.random_data import mnist_like
from tlkit import layers, ops


class _Dataset:
    """Stand-in for the slice of tf.data the guide uses: from_tensor_slices, shuffle, batch."""

    def __init__(self, arrays, batch_size=None, shuffle=False):
        self.arrays, self.batch_size, self._shuffle = arrays, batch_size, shuffle

    @classmethod
    def from_tensor_slices(cls, arrays):
        return cls(arrays)

    def shuffle(self, buffer_size):
        return _Dataset(self.arrays, self.batch_size, True)

    def batch(self, batch_size):
        return _Dataset(self.arrays, batch_size, self._shuffle)

    def _leaves(self, part, index):
        return {k: v[index] for k, v in part.items()} if isinstance(part, dict) else part[index]

    def __len__(self):
        first = self.arrays[0] if isinstance(self.arrays, tuple) else self.arrays
        first = next(iter(first.values())) if isinstance(first, dict) else first
        return int(np.ceil(len(first) / self.batch_size))

    def __iter__(self):
        first = self.arrays[0] if isinstance(self.arrays, tuple) else self.arrays
        n = len(next(iter(first.values())) if isinstance(first, dict) else first)
        order = np.random.default_rng().permutation(n) if self._shuffle else np.arange(n)
        for i in range(0, n, self.batch_size):
            index = order[i:i + self.batch_size]
            yield tuple(self._leaves(part, index) for part in self.arrays) if isinstance(self.arrays, tuple) \
                else self._leaves(self.arrays, index)


tf = types.SimpleNamespace(data=types.SimpleNamespace(Dataset=_Dataset))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _mnist(n):
    x, y = mnist_like(n)
    return x, y.astype("uint8")


def _data():
    (x_train, y_train), (x_test, y_test) = _mnist(2400), _mnist(400)

    # Preprocess the data (these are NumPy arrays)
    x_train = x_train.reshape(2400, 784).astype("float32") / 255
    x_test = x_test.reshape(400, 784).astype("float32") / 255

    y_train = y_train.astype("float32")
    y_test = y_test.astype("float32")

    # Reserve 400 samples for validation
    x_val = x_train[-400:]
    y_val = y_train[-400:]
    x_train = x_train[:-400]
    y_train = y_train[:-400]
    return x_train, y_train, x_val, y_val, x_test, y_test


def get_uncompiled_model():
    inputs = keras.Input(shape=(784,), name="digits")
    x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return model


def get_compiled_model():
    model = get_uncompiled_model()
    model.compile(
        optimizer="rmsprop",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    return model


def _learned(history, key="loss"):
    return history.history[key][-1] < history.history[key][0]


def test_api_overview_a_first_end_to_end_example():
    x_train, y_train, x_val, y_val, x_test, y_test = _data()
    model = get_uncompiled_model()

    model.compile(
        optimizer=keras.optimizers.RMSprop(),  # Optimizer
        # Loss function to minimize
        loss=keras.losses.SparseCategoricalCrossentropy(),
        # List of metrics to monitor
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )

    print("Fit model on training data")
    history = model.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=2,
        # We pass some validation for
        # monitoring validation loss and metrics
        # at the end of each epoch
        validation_data=(x_val, y_val),
        verbose=0,
    )
    assert sorted(history.history) == ["loss", "sparse_categorical_accuracy", "val_loss",
                                       "val_sparse_categorical_accuracy"]
    assert _learned(history)

    # Evaluate the model on the test data using `evaluate`
    print("Evaluate on test data")
    results = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
    print("test loss, test acc:", results)
    assert results[1] > 0.5  # chance is 0.1

    # Generate predictions (probabilities -- the output of the last layer)
    # on new data using `predict`
    print("Generate predictions for 3 samples")
    predictions = model.predict(x_test[:3], verbose=0)
    print("predictions shape:", predictions.shape)
    assert predictions.shape == (3, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)

    model.compile(
        optimizer="rmsprop",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    assert np.isclose(model.evaluate(x_test, y_test, verbose=0)[0], results[0], rtol=1e-5)


def test_custom_losses_and_metrics():
    x_train, y_train, *_ = _data()

    def custom_mean_squared_error(y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)

    model = get_uncompiled_model()
    model.compile(optimizer=keras.optimizers.Adam(), loss=custom_mean_squared_error)

    # We need to one-hot encode the labels to use MSE
    y_train_one_hot = ops.one_hot(y_train, num_classes=10)
    history = model.fit(x_train, y_train_one_hot, batch_size=64, epochs=2, verbose=0)
    assert _learned(history)
    np.testing.assert_allclose(model.evaluate(x_train, y_train_one_hot, verbose=0),
                               np.mean((model.predict(x_train, verbose=0) - np.asarray(y_train_one_hot)) ** 2),
                               rtol=1e-4)

    class CustomMSE(keras.losses.Loss):
        def __init__(self, regularization_factor=0.1, name="custom_mse"):
            super().__init__(name=name)
            self.regularization_factor = regularization_factor

        def call(self, y_true, y_pred):
            mse = ops.mean(ops.square(y_true - y_pred), axis=-1)
            reg = ops.mean(ops.square(0.5 - y_pred), axis=-1)
            return mse + reg * self.regularization_factor

    model = get_uncompiled_model()
    model.compile(optimizer=keras.optimizers.Adam(), loss=CustomMSE())

    y_train_one_hot = ops.one_hot(y_train, num_classes=10)
    history = model.fit(x_train, y_train_one_hot, batch_size=64, epochs=2, verbose=0)
    assert _learned(history)

    class CategoricalTruePositives(keras.metrics.Metric):
        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(
                shape=(), name="ctp", initializer="zeros"
            )

        def update_state(self, y_true, y_pred, sample_weight=None):
            y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
            values = ops.cast(y_true, "int32") == ops.cast(y_pred, "int32")
            values = ops.cast(values, "float32")
            if sample_weight is not None:
                sample_weight = ops.cast(sample_weight, "float32")
                values = ops.multiply(values, sample_weight)
            self.true_positives.assign_add(ops.sum(values))

        def result(self):
            return self.true_positives

        def reset_state(self):
            # The state of the metric will be reset at the start of each epoch.
            self.true_positives.assign(0.0)

    model = get_uncompiled_model()
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[CategoricalTruePositives()],
    )
    history = model.fit(x_train, y_train, batch_size=64, epochs=3, verbose=0)
    counts = history.history["categorical_true_positives"]
    assert counts[-1] > counts[0]  # a count over the epoch (reset each epoch), growing as the model learns
    # As in Keras, y_true (batch,) == y_pred (batch, 1) broadcasts to (batch, batch): the guide's metric counts
    # the pairs of samples whose label equals the other's prediction. Checked batch by batch against numpy.
    loss, count = model.evaluate(x_train, y_train, batch_size=100, verbose=0)
    predicted = model.predict(x_train, verbose=0).argmax(axis=1)
    expected = sum(np.sum(y_train[i:i + 100][None, :] == predicted[i:i + 100][:, None]) for i in range(0, 2000, 100))
    assert count == expected


def test_losses_that_dont_fit_the_standard_signature():
    x_train, y_train, *_ = _data()

    class ActivityRegularizationLayer(layers.Layer):
        def call(self, inputs):
            self.add_loss(ops.sum(inputs) * 0.1)
            return inputs  # Pass-through layer.

    inputs = keras.Input(shape=(784,), name="digits")
    x = layers.Dense(64, activation="relu", name="dense_1")(inputs)

    # Insert activity regularization as a layer
    x = ActivityRegularizationLayer()(x)

    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, name="predictions")(x)

    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    # The displayed loss will be much higher than before
    # due to the regularization component.
    history = model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0)
    assert history.history["loss"][0] > np.log(10)

    class LogisticEndpoint(keras.layers.Layer):
        def __init__(self, name=None):
            super().__init__(name=name)
            self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

        def call(self, targets, logits, sample_weights=None):
            # Compute the training-time loss value and add it
            # to the layer using `self.add_loss()`.
            loss = self.loss_fn(targets, logits, sample_weights)
            self.add_loss(loss)

            # Return the inference-time prediction tensor (for `.predict()`).
            return ops.softmax(logits)

    inputs = keras.Input(shape=(3,), name="inputs")
    targets = keras.Input(shape=(10,), name="targets")
    logits = keras.layers.Dense(10)(inputs)
    predictions = LogisticEndpoint(name="predictions")(targets, logits)

    model = keras.Model(inputs=[inputs, targets], outputs=predictions)
    model.compile(optimizer="adam")  # No loss argument!

    data = {
        "inputs": np.random.random((3, 3)),
        "targets": np.random.random((3, 10)),
    }
    history = model.fit(data, epochs=30, verbose=0)
    assert _learned(history)

    model = get_compiled_model()
    history = model.fit(x_train, y_train, batch_size=64, validation_split=0.2, epochs=1, verbose=0)
    assert "val_loss" in history.history


def test_training_from_datasets_and_iterators():
    x_train, y_train, x_val, y_val, x_test, y_test = _data()
    model = get_compiled_model()

    # First, let's create a training Dataset instance.
    # For the sake of our example, we'll use the same MNIST data as before.
    train_dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    # Shuffle and slice the dataset.
    train_dataset = train_dataset.shuffle(buffer_size=1024).batch(64)

    # Now we get a test dataset.
    test_dataset = tf.data.Dataset.from_tensor_slices((x_test, y_test))
    test_dataset = test_dataset.batch(64)

    # Since the dataset already takes care of batching,
    # we don't pass a `batch_size` argument.
    history = model.fit(train_dataset, epochs=3, verbose=0)
    assert _learned(history)

    # You can also evaluate or predict on a dataset.
    print("Evaluate")
    result = model.evaluate(test_dataset, verbose=0)
    scores = dict(zip(model.metrics_names, result))
    assert scores["sparse_categorical_accuracy"] > 0.5
    np.testing.assert_allclose(result, model.evaluate(x_test, y_test, verbose=0), rtol=1e-5)

    model = get_compiled_model()
    # Only use the 10 batches per epoch (that's 64 * 10 samples)
    history = model.fit(train_dataset, epochs=3, steps_per_epoch=10, verbose=0)
    assert len(history.history["loss"]) == 3

    # Prepare the validation dataset
    val_dataset = tf.data.Dataset.from_tensor_slices((x_val, y_val))
    val_dataset = val_dataset.batch(64)

    model = get_compiled_model()
    history = model.fit(train_dataset, epochs=1, validation_data=val_dataset, verbose=0)
    assert "val_loss" in history.history

    model = get_compiled_model()
    model.fit(
        train_dataset,
        epochs=1,
        # Only run validation using the first 3 batches of the dataset
        # using the `validation_steps` argument
        validation_data=val_dataset,
        validation_steps=3,
        verbose=0,
    )

    class ExamplePyDataset(keras.utils.PyDataset):
        def __init__(self, x, y, batch_size, **kwargs):
            super().__init__(**kwargs)
            self.x = x
            self.y = y
            self.batch_size = batch_size

        def __len__(self):
            return int(np.ceil(len(self.x) / float(self.batch_size)))

        def __getitem__(self, idx):
            batch_x = self.x[idx * self.batch_size : (idx + 1) * self.batch_size]
            batch_y = self.y[idx * self.batch_size : (idx + 1) * self.batch_size]
            return batch_x, batch_y

    train_py_dataset = ExamplePyDataset(x_train, y_train, batch_size=32)
    val_py_dataset = ExamplePyDataset(x_val, y_val, batch_size=32)

    model = get_compiled_model()
    history = model.fit(train_py_dataset, batch_size=64, validation_data=val_py_dataset, epochs=1, verbose=0)
    assert history.history["val_sparse_categorical_accuracy"][0] > 0.3

    np.testing.assert_allclose(model.evaluate(val_py_dataset, verbose=0), model.evaluate(x_val, y_val, verbose=0),
                               rtol=1e-5)

    train_py_dataset = ExamplePyDataset(x_train, y_train, batch_size=32, workers=4)
    val_py_dataset = ExamplePyDataset(x_val, y_val, batch_size=32, workers=4)

    model = get_compiled_model()
    model.fit(train_py_dataset, batch_size=64, validation_data=val_py_dataset, epochs=1, verbose=0)


def test_training_from_pytorch_dataloaders():
    torch = pytest.importorskip("torch")
    x_train, y_train, x_val, y_val, *_ = _data()

    class ExampleTorchDataset(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x = x
            self.y = y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, idx):
            return self.x[idx], self.y[idx]

    train_torch_dataset = ExampleTorchDataset(x_train, y_train)
    val_torch_dataset = ExampleTorchDataset(x_val, y_val)

    train_dataloader = torch.utils.data.DataLoader(
        train_torch_dataset, batch_size=32, shuffle=True
    )
    val_dataloader = torch.utils.data.DataLoader(
        val_torch_dataset, batch_size=32, shuffle=True
    )

    model = get_compiled_model()
    history = model.fit(train_dataloader, batch_size=64, validation_data=val_dataloader, epochs=1, verbose=0)
    result = model.evaluate(val_dataloader, verbose=0)
    assert history.history["val_sparse_categorical_accuracy"][0] > 0.3
    np.testing.assert_allclose(result, model.evaluate(x_val, y_val, verbose=0), rtol=1e-4)


def test_sample_weighting_and_class_weighting():
    x_train, y_train, *_ = _data()
    class_weight = {
        0: 1.0,
        1: 1.0,
        2: 1.0,
        3: 1.0,
        4: 1.0,
        # Set weight "2" for class "5",
        # making this class 2x more important
        5: 2.0,
        6: 1.0,
        7: 1.0,
        8: 1.0,
        9: 1.0,
    }

    print("Fit with class weight")
    model = get_compiled_model()
    history = model.fit(x_train, y_train, class_weight=class_weight, batch_size=64, epochs=1, verbose=0)

    sample_weight = np.ones(shape=(len(y_train),))
    sample_weight[y_train == 5] = 2.0

    print("Fit with sample weight")
    model = get_compiled_model()
    model.fit(x_train, y_train, sample_weight=sample_weight, batch_size=64, epochs=1, verbose=0)
    # The weighted loss is the weighted mean of the per-sample losses.
    p = model.predict(x_train, verbose=0)[np.arange(len(y_train)), y_train.astype(int)]
    expected = np.sum(-np.log(p) * sample_weight) / len(y_train)
    assert np.isclose(model.evaluate(x_train, y_train, sample_weight=sample_weight, verbose=0)[0], expected,
                      rtol=1e-4)

    # Create a Dataset that includes sample weights
    # (3rd element in the return tuple).
    train_dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train, sample_weight))

    # Shuffle and slice the dataset.
    train_dataset = train_dataset.shuffle(buffer_size=1024).batch(64)

    model = get_compiled_model()
    history = model.fit(train_dataset, epochs=2, verbose=0)
    assert _learned(history)


def test_passing_data_to_multi_input_multi_output_models():
    image_input = keras.Input(shape=(32, 32, 3), name="img_input")
    timeseries_input = keras.Input(shape=(None, 10), name="ts_input")

    x1 = layers.Conv2D(3, 3)(image_input)
    x1 = layers.GlobalMaxPooling2D()(x1)

    x2 = layers.Conv1D(3, 3)(timeseries_input)
    x2 = layers.GlobalMaxPooling1D()(x2)

    x = layers.concatenate([x1, x2])

    score_output = layers.Dense(1, name="score_output")(x)
    class_output = layers.Dense(5, name="class_output")(x)

    model = keras.Model(
        inputs=[image_input, timeseries_input], outputs=[score_output, class_output]
    )

    keras.utils.plot_model(model, "multi_input_and_output_model.png", show_shapes=True)
    assert os.path.getsize("multi_input_and_output_model.png") > 1000

    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=[
            keras.losses.MeanSquaredError(),
            keras.losses.CategoricalCrossentropy(),
        ],
        metrics=[
            [
                keras.metrics.MeanAbsolutePercentageError(),
                keras.metrics.MeanAbsoluteError(),
            ],
            [keras.metrics.CategoricalAccuracy()],
        ],
    )

    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss={
            "score_output": keras.losses.MeanSquaredError(),
            "class_output": keras.losses.CategoricalCrossentropy(),
        },
        metrics={
            "score_output": [
                keras.metrics.MeanAbsolutePercentageError(),
                keras.metrics.MeanAbsoluteError(),
            ],
            "class_output": [keras.metrics.CategoricalAccuracy()],
        },
        loss_weights={"score_output": 2.0, "class_output": 1.0},
    )

    # Generate dummy NumPy data
    img_data = np.random.random_sample(size=(100, 32, 32, 3))
    ts_data = np.random.random_sample(size=(100, 20, 10))
    score_targets = np.random.random_sample(size=(100, 1))
    class_targets = np.random.random_sample(size=(100, 5))

    history = model.fit([img_data, ts_data], [score_targets, class_targets], batch_size=32, epochs=1, verbose=0)
    h = history.history
    assert {"score_output_mean_absolute_error", "class_output_categorical_accuracy"} <= set(h)
    np.testing.assert_allclose(h["loss"], 2.0 * np.array(h["score_output_loss"]) + h["class_output_loss"],
                               rtol=1e-4)

    # List loss version
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=[None, keras.losses.CategoricalCrossentropy()],
    )

    # Or dict loss version
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss={"class_output": keras.losses.CategoricalCrossentropy()},
    )
    score_before = model.get_layer("score_output").get_weights()[0].copy()
    model.fit([img_data, ts_data], [score_targets, class_targets], batch_size=32, epochs=1, verbose=0)
    # No loss on the score output: its layer gets no gradient.
    np.testing.assert_array_equal(model.get_layer("score_output").get_weights()[0], score_before)

    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=[
            keras.losses.MeanSquaredError(),
            keras.losses.CategoricalCrossentropy(),
        ],
    )

    # Fit on lists
    model.fit([img_data, ts_data], [score_targets, class_targets], batch_size=32, epochs=1, verbose=0)

    # Alternatively, fit on dicts
    model.fit(
        {"img_input": img_data, "ts_input": ts_data},
        {"score_output": score_targets, "class_output": class_targets},
        batch_size=32,
        epochs=1,
        verbose=0,
    )

    train_dataset = tf.data.Dataset.from_tensor_slices(
        (
            {"img_input": img_data, "ts_input": ts_data},
            {"score_output": score_targets, "class_output": class_targets},
        )
    )
    train_dataset = train_dataset.shuffle(buffer_size=1024).batch(64)

    history = model.fit(train_dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # The dataset of dicts reaches the same outputs as the dict of arrays (noise targets: nothing to learn).
    np.testing.assert_allclose(model.evaluate(train_dataset, verbose=0),
                               model.evaluate({"img_input": img_data, "ts_input": ts_data},
                                              {"score_output": score_targets, "class_output": class_targets},
                                              verbose=0), rtol=1e-4)


def test_callbacks_checkpoints_and_learning_rate_schedules(capsys):
    x_train, y_train, *_ = _data()
    x_train, y_train = x_train[:800], y_train[:800]
    model = get_compiled_model()

    callbacks = [
        keras.callbacks.EarlyStopping(
            # Stop training when `val_loss` is no longer improving
            monitor="val_loss",
            # "no longer improving" being defined as "no better than 1e-2 less"
            min_delta=1e-2,
            # "no longer improving" being further defined as "for at least 2 epochs"
            patience=2,
            verbose=1,
        )
    ]
    history = model.fit(
        x_train,
        y_train,
        epochs=20,
        batch_size=64,
        callbacks=callbacks,
        validation_split=0.2,
        verbose=0,
    )
    val = history.history["val_loss"]
    if len(val) < 20:  # it stopped: the last two epochs did not improve on the best before them by 1e-2
        assert min(val[-2:]) > min(val[:-2]) - 1e-2 and "early stopping" in capsys.readouterr().out

    class LossHistory(keras.callbacks.Callback):
        def on_train_begin(self, logs):
            self.per_batch_losses = []

        def on_batch_end(self, batch, logs):
            self.per_batch_losses.append(logs.get("loss"))

    loss_history = LossHistory()
    model.fit(x_train, y_train, epochs=1, batch_size=100, callbacks=[loss_history], verbose=0)
    assert len(loss_history.per_batch_losses) == 8

    model = get_compiled_model()

    callbacks = [
        keras.callbacks.ModelCheckpoint(
            # Path where to save the model
            # The two parameters below mean that we will overwrite
            # the current checkpoint if and only if
            # the `val_loss` score has improved.
            # The saved model name will include the current epoch.
            filepath="mymodel_{epoch}.keras",
            save_best_only=True,  # Only save a model if `val_loss` has improved.
            monitor="val_loss",
            verbose=1,
        )
    ]
    model.fit(
        x_train,
        y_train,
        epochs=2,
        batch_size=64,
        callbacks=callbacks,
        validation_split=0.2,
        verbose=0,
    )
    assert os.path.exists("mymodel_1.keras")

    # Prepare a directory to store all the checkpoints.
    checkpoint_dir = "./ckpt"
    if not os.path.exists(checkpoint_dir):
        os.makedirs(checkpoint_dir)

    def make_or_restore_model():
        # Either restore the latest model, or create a fresh one
        # if there is no checkpoint available.
        checkpoints = [checkpoint_dir + "/" + name for name in os.listdir(checkpoint_dir)]
        if checkpoints:
            latest_checkpoint = max(checkpoints, key=os.path.getctime)
            print("Restoring from", latest_checkpoint)
            return keras.models.load_model(latest_checkpoint)
        print("Creating a new model")
        return get_compiled_model()

    for _ in range(2):  # the second run restores the first one's checkpoint
        model = make_or_restore_model()
        callbacks = [
            # This callback saves the model every 10 batches.
            # We include the training loss in the saved model name.
            keras.callbacks.ModelCheckpoint(
                filepath=checkpoint_dir + "/model-loss={loss:.2f}.keras", save_freq=10
            )
        ]
        model.fit(x_train, y_train, epochs=1, callbacks=callbacks, verbose=0)
    assert "Restoring from ./ckpt/model-loss=" in capsys.readouterr().out
    assert model.optimizer.iterations > 25  # the restored model went on from its saved optimizer state

    initial_learning_rate = 0.1
    lr_schedule = keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate, decay_steps=100000, decay_rate=0.96, staircase=True
    )

    optimizer = keras.optimizers.RMSprop(learning_rate=lr_schedule)
    assert np.isclose(float(optimizer.learning_rate), 0.1)

    keras.callbacks.TensorBoard(
        log_dir="/full_path_to_your_logs",
        histogram_freq=0,  # How often to log histogram visualizations
        embeddings_freq=0,  # How often to log embedding visualizations
        update_freq="epoch",
    )  # How often to write logs (default: once per epoch)
