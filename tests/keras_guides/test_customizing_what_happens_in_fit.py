"""keras-io "Customizing what happens in fit()" (guides/custom_train_step_in_tensorflow.py, Keras 3, and
its Keras 2 predecessor guides/customizing_what_happens_in_fit.py) ported to tlkit.

The guide's code is kept as written; what a port changes:
- ``import keras`` / ``from keras import layers`` -> ``import tlkit as keras`` / ``from tlkit import layers``;
- ``import tensorflow as tf``: the guide uses only ``tf.GradientTape`` (and, in the GAN, ``tf.shape``,
  ``tf.concat``, ``tf.ones``, ``tf.zeros``), which ``TF`` below maps onto tlkit;
- the MNIST digits become small random arrays, and epochs are kept few; ``verbose=0`` keeps the log quiet;
- the GAN trains on 64 random 28x28 pictures, two epochs of two batches.
Each section ends with checks that the numbers are sane."""
import types

import numpy as np

import tlkit as keras
from tlkit import layers, ops

tf = types.SimpleNamespace(GradientTape=keras.GradientTape, shape=ops.shape, concat=ops.concatenate,
                           ones=ops.ones, zeros=ops.zeros)


def _data(n=256):
    # The guide's np.random.random targets are noise; a linear target shows the loss really falls.
    rng = np.random.default_rng(0)
    x = rng.random((n, 32))
    y = x @ rng.normal(size=(32, 1)) * 0.3
    return x, y


def test_a_first_simple_example():
    class CustomModel(keras.Model):
        def train_step(self, data):
            # Unpack the data. Its structure depends on your model and
            # on what you pass to `fit()`.
            x, y = data

            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)  # Forward pass
                # Compute the loss value
                # (the loss function is configured in `compile()`)
                loss = self.compute_loss(y=y, y_pred=y_pred)

            # Compute gradients
            trainable_vars = self.trainable_variables
            gradients = tape.gradient(loss, trainable_vars)

            # Update weights
            self.optimizer.apply(gradients, trainable_vars)

            # Update metrics (includes the metric that tracks the loss)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)

            # Return a dict mapping metric names to current value
            return {m.name: m.result() for m in self.metrics}

    # Construct and compile an instance of CustomModel
    inputs = keras.Input(shape=(32,))
    outputs = keras.layers.Dense(1)(inputs)
    model = CustomModel(inputs, outputs)
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])

    # Just use `fit` as usual
    x, y = _data()
    history = model.fit(x, y, epochs=3, verbose=0)

    h = history.history
    assert sorted(h) == ["loss", "mae"]
    assert h["loss"][-1] < h["loss"][0] and h["mae"][-1] < h["mae"][0]
    # The logs are the epoch means of the real loss: the last one brackets the loss after training.
    after = float(np.mean((model.predict(x, verbose=0) - y) ** 2))
    assert 0.5 * after < h["loss"][-1] < 2.0 * h["loss"][0]


def test_going_lower_level():
    class CustomModel(keras.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.mae_metric = keras.metrics.MeanAbsoluteError(name="mae")
            self.loss_fn = keras.losses.MeanSquaredError()

        def train_step(self, data):
            x, y = data

            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)  # Forward pass
                # Compute our own loss
                loss = self.loss_fn(y, y_pred)

            # Compute gradients
            trainable_vars = self.trainable_variables
            gradients = tape.gradient(loss, trainable_vars)

            # Update weights
            self.optimizer.apply(gradients, trainable_vars)

            # Compute our own metrics
            self.loss_tracker.update_state(loss)
            self.mae_metric.update_state(y, y_pred)
            return {
                "loss": self.loss_tracker.result(),
                "mae": self.mae_metric.result(),
            }

        @property
        def metrics(self):
            # We list our `Metric` objects here so that `reset_states()` can be
            # called automatically at the start of each epoch
            # or at the start of `evaluate()`.
            return [self.loss_tracker, self.mae_metric]

    # Construct an instance of CustomModel
    inputs = keras.Input(shape=(32,))
    outputs = keras.layers.Dense(1)(inputs)
    model = CustomModel(inputs, outputs)

    # We don't pass a loss or metrics here.
    model.compile(optimizer="adam")

    # Just use `fit` as usual -- you can use callbacks, etc.
    x, y = _data()
    seen = []
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seen.append(model.loss_tracker.count))])

    loss = history.history["loss"]
    assert all(b < a for a, b in zip(loss, loss[1:]))
    assert seen == [0.0] * 5  # the trackers listed in `metrics` are reset before each epoch


def test_supporting_sample_weight_and_class_weight():
    class CustomModel(keras.Model):
        def train_step(self, data):
            # Unpack the data. Its structure depends on your model and
            # on what you pass to `fit()`.
            if len(data) == 3:
                x, y, sample_weight = data
            else:
                sample_weight = None
                x, y = data

            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)  # Forward pass
                # Compute the loss value.
                # The loss function is configured in `compile()`.
                loss = self.compute_loss(
                    y=y,
                    y_pred=y_pred,
                    sample_weight=sample_weight,
                )

            # Compute gradients
            trainable_vars = self.trainable_variables
            gradients = tape.gradient(loss, trainable_vars)

            # Update weights
            self.optimizer.apply(gradients, trainable_vars)

            # Update the metrics.
            # Metrics are configured in `compile()`.
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred, sample_weight=sample_weight)

            # Return a dict mapping metric names to current value.
            # Note that it will include the loss (tracked in self.metrics).
            return {m.name: m.result() for m in self.metrics}

    # Construct and compile an instance of CustomModel
    inputs = keras.Input(shape=(32,))
    outputs = keras.layers.Dense(1)(inputs)
    model = CustomModel(inputs, outputs)
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])

    # You can now use sample_weight argument
    x, y = _data()
    sw = np.random.default_rng(1).random((len(x), 1))
    history = model.fit(x, y, sample_weight=sw, epochs=3, verbose=0)

    loss = history.history["loss"]
    assert loss[-1] < loss[0]
    # Zero weights on every sample: zero gradients, so plain SGD (no momentum left from Adam) keeps the weights.
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    before = model.get_weights()
    model.fit(x, y, sample_weight=np.zeros(len(x)), epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_providing_your_own_evaluation_step():
    class CustomModel(keras.Model):
        def test_step(self, data):
            # Unpack the data
            x, y = data
            # Compute predictions
            y_pred = self(x, training=False)
            # Updates the metrics tracking the loss
            loss = self.compute_loss(y=y, y_pred=y_pred)
            # Update the metrics.
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            # Return a dict mapping metric names to current value.
            # Note that it will include the loss (tracked in self.metrics).
            return {m.name: m.result() for m in self.metrics}

    # Construct an instance of CustomModel
    inputs = keras.Input(shape=(32,))
    outputs = keras.layers.Dense(1)(inputs)
    model = CustomModel(inputs, outputs)
    model.compile(loss="mse", metrics=["mae"])

    # Evaluate with our custom test_step
    x, y = _data()
    result = model.evaluate(x, y, verbose=0)

    # Whole batches of 32: the mean of batch means is the mean over all samples.
    err = model.predict(x, verbose=0) - y
    np.testing.assert_allclose(result, [np.mean(err ** 2), np.mean(np.abs(err))], rtol=1e-5)


def test_keras2_compiled_loss_and_compiled_metrics():
    """The guide's Keras 2 edition: ``self.compiled_loss(..., regularization_losses=self.losses)`` and
    ``self.compiled_metrics.update_state``, with a weight penalty that must reach the gradient."""
    class CustomModel(keras.Model):
        def train_step(self, data):
            x, y = data

            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)  # Forward pass
                # Compute the loss value
                # (the loss function is configured in `compile()`)
                loss = self.compiled_loss(y, y_pred, regularization_losses=self.losses)

            # Compute gradients
            trainable_vars = self.trainable_variables
            gradients = tape.gradient(loss, trainable_vars)
            # Update weights
            self.optimizer.apply_gradients(zip(gradients, trainable_vars))
            # Update metrics (includes the metric that tracks the loss)
            self.compiled_metrics.update_state(y, y_pred)
            # Return a dict mapping metric names to current value
            return {m.name: m.result() for m in self.metrics}

    def make(model_class):
        keras.utils.set_random_seed(3)
        inputs = keras.Input(shape=(32,))
        outputs = keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L2(0.01))(inputs)
        model = model_class(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
        return model

    x, y = _data()
    custom, built_in = make(CustomModel), make(keras.Model)
    h_custom = custom.fit(x, y, epochs=3, shuffle=False, verbose=0).history
    h_built_in = built_in.fit(x, y, epochs=3, shuffle=False, verbose=0).history
    # The same algorithm as fit's own step: the same weights and logs (the penalty included).
    for a, b in zip(custom.get_weights(), built_in.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for key in ("loss", "mae"):
        np.testing.assert_allclose(h_custom[key], h_built_in[key], rtol=1e-4)
    assert h_custom["loss"][-1] < h_custom["loss"][0]


def test_wrapping_up_a_gan_with_two_optimizers():
    # Create the discriminator
    discriminator = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(64, (3, 3), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2D(128, (3, 3), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.GlobalMaxPooling2D(),
            layers.Dense(1),
        ],
        name="discriminator",
    )

    # Create the generator
    latent_dim = 128
    generator = keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            # We want to generate 128 coefficients to reshape into a 7x7x128 map
            layers.Dense(7 * 7 * 128),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Reshape((7, 7, 128)),
            layers.Conv2DTranspose(128, (4, 4), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2DTranspose(128, (4, 4), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Conv2D(1, (7, 7), padding="same", activation="sigmoid"),
        ],
        name="generator",
    )

    class GAN(keras.Model):
        def __init__(self, discriminator, generator, latent_dim):
            super().__init__()
            self.discriminator = discriminator
            self.generator = generator
            self.latent_dim = latent_dim
            self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
            self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
            self.seed_generator = keras.random.SeedGenerator(1337)

        @property
        def metrics(self):
            return [self.d_loss_tracker, self.g_loss_tracker]

        def compile(self, d_optimizer, g_optimizer, loss_fn):
            super().compile()
            self.d_optimizer = d_optimizer
            self.g_optimizer = g_optimizer
            self.loss_fn = loss_fn

        def train_step(self, real_images):
            if isinstance(real_images, tuple):
                real_images = real_images[0]
            # Sample random points in the latent space
            batch_size = tf.shape(real_images)[0]
            random_latent_vectors = keras.random.normal(
                shape=(batch_size, self.latent_dim), seed=self.seed_generator
            )

            # Decode them to fake images
            generated_images = self.generator(random_latent_vectors)

            # Combine them with real images
            combined_images = tf.concat([generated_images, real_images], axis=0)

            # Assemble labels discriminating real from fake images
            labels = tf.concat(
                [tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0
            )
            # Add random noise to the labels - important trick!
            labels += 0.05 * keras.random.uniform(
                tf.shape(labels), seed=self.seed_generator
            )

            # Train the discriminator
            with tf.GradientTape() as tape:
                predictions = self.discriminator(combined_images)
                d_loss = self.loss_fn(labels, predictions)
            grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
            self.d_optimizer.apply(grads, self.discriminator.trainable_weights)

            # Sample random points in the latent space
            random_latent_vectors = keras.random.normal(
                shape=(batch_size, self.latent_dim), seed=self.seed_generator
            )

            # Assemble labels that say "all real images"
            misleading_labels = tf.zeros((batch_size, 1))

            # Train the generator (note that we should *not* update the weights
            # of the discriminator)!
            with tf.GradientTape() as tape:
                predictions = self.discriminator(self.generator(random_latent_vectors))
                g_loss = self.loss_fn(misleading_labels, predictions)
            grads = tape.gradient(g_loss, self.generator.trainable_weights)
            self.g_optimizer.apply(grads, self.generator.trainable_weights)

            # Update metrics and return their value.
            self.d_loss_tracker.update_state(d_loss)
            self.g_loss_tracker.update_state(g_loss)
            return {
                "d_loss": self.d_loss_tracker.result(),
                "g_loss": self.g_loss_tracker.result(),
            }

    # Small random "images" in place of MNIST's 70,000 digits: bright strokes on 28x28 frames.
    rng = np.random.default_rng(0)
    all_digits = (rng.random((64, 28, 28)) > 0.8).astype("uint8") * 255
    all_digits = all_digits.astype("float32") / 255.0
    all_digits = np.reshape(all_digits, (-1, 28, 28, 1))

    gan = GAN(discriminator=discriminator, generator=generator, latent_dim=latent_dim)
    gan.compile(
        d_optimizer=keras.optimizers.Adam(learning_rate=0.0003),
        g_optimizer=keras.optimizers.Adam(learning_rate=0.0003),
        loss_fn=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    d_before, g_before = discriminator.get_weights(), generator.get_weights()
    history = gan.fit(all_digits, batch_size=32, epochs=2, verbose=0)
    assert generator.output_shape == (None, 28, 28, 1)

    h = history.history
    assert sorted(h) == ["d_loss", "g_loss"] and len(h["d_loss"]) == 2
    assert all(np.isfinite(v) and 0.0 < v < 5.0 for v in h["d_loss"] + h["g_loss"])
    # Both optimizers moved their own network.
    assert all(not np.allclose(a, b) for a, b in zip(d_before, discriminator.get_weights()))
    assert all(not np.allclose(a, b) for a, b in zip(g_before, generator.get_weights()))
