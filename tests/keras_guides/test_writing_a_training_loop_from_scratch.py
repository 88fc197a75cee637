"""keras-io "Writing a training loop from scratch" (guides/writing_a_custom_training_loop_in_tensorflow.py,
Keras 3) ported to tlkit.

The guide's code is kept as written; what a port changes:
- ``import keras`` -> ``import tlkit as keras``;
- ``import tensorflow as tf``: the guide uses ``tf.GradientTape``, ``tf.function`` (a compiler: tlkit runs
  the function as it is), ``tf.reduce_sum``, ``tf.concat``, ``tf.ones``/``tf.zeros`` and ``tf.random``,
  which ``TF`` below maps onto tlkit;
- ``tf.data.Dataset...batch(batch_size)`` becomes a list of batches; MNIST becomes small random "digits";
- the GAN trains on 64 random 28x28 pictures, two epochs of two batches.
Prints are left out; each section ends with checks that the numbers are sane."""
import types

import numpy as np

import tlkit as keras
from tlkit import ops

tf = types.SimpleNamespace(GradientTape=keras.GradientTape, function=lambda fn: fn, reduce_sum=ops.sum,
                           concat=ops.concatenate, ones=ops.ones, zeros=ops.zeros,
                           random=types.SimpleNamespace(normal=keras.random.normal, uniform=keras.random.uniform))


def random_digits(rng, n=256, d=6, classes=3):
    """Separable classes: Gaussian blobs around random centres (stands in for MNIST)."""
    centres = rng.standard_normal((classes, d)) * 3
    y = rng.integers(0, classes, n)
    x = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y


def batches(x, y, batch_size):
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


def get_model(features=784):
    inputs = keras.Input(shape=(features,), name="digits")
    x1 = keras.layers.Dense(64, activation="relu")(inputs)
    x2 = keras.layers.Dense(64, activation="relu")(x1)
    outputs = keras.layers.Dense(10, name="predictions")(x2)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return model


def test_training_loop_from_scratch(rng):
    """The first end-to-end example (moved here from tests/engine/test_custom_code_paths.py)."""
    x_train, y_train = random_digits(rng, n=512, d=20, classes=4)
    inputs = keras.Input(shape=(20,), name="digits")
    h = keras.layers.Dense(32, activation="relu")(inputs)
    h = keras.layers.Dense(32, activation="relu")(h)
    outputs = keras.layers.Dense(4, name="predictions")(h)
    model = keras.Model(inputs=inputs, outputs=outputs)
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    train_acc_metric = keras.metrics.SparseCategoricalAccuracy()
    batch_size, losses = 32, []
    for epoch in range(6):
        for step in range(len(x_train) // batch_size):
            x_batch = x_train[step * batch_size:(step + 1) * batch_size]
            y_batch = y_train[step * batch_size:(step + 1) * batch_size]
            with keras.GradientTape() as tape:
                logits = model(x_batch, training=True)
                loss_value = loss_fn(y_batch, logits)
            grads = tape.gradient(loss_value, model.trainable_weights)
            optimizer.apply_gradients(zip(grads, model.trainable_weights))
            train_acc_metric.update_state(y_batch, logits)
            losses.append(float(loss_value))
        train_acc = float(train_acc_metric.result())
        train_acc_metric.reset_state()
    assert np.mean(losses[-16:]) < 0.5 * np.mean(losses[:16])
    assert train_acc > 0.8  # chance is 0.25


def _datasets(rng, batch_size=32):
    x, y = random_digits(rng, n=640, d=784, classes=10)
    x_train, y_train, x_val, y_val = x[:-128], y[:-128], x[-128:], y[-128:]
    return batches(x_train, y_train, batch_size), batches(x_val, y_val, batch_size)


def test_low_level_handling_of_metrics_with_a_compiled_style_step(rng):
    train_dataset, val_dataset = _datasets(rng)
    # Get a fresh model
    model = get_model()

    # Instantiate an optimizer to train the model.
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    # Instantiate a loss function.
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    # Prepare the metrics.
    train_acc_metric = keras.metrics.SparseCategoricalAccuracy()
    val_acc_metric = keras.metrics.SparseCategoricalAccuracy()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss_value = loss_fn(y, logits)
        grads = tape.gradient(loss_value, model.trainable_weights)
        optimizer.apply(grads, model.trainable_weights)
        train_acc_metric.update_state(y, logits)
        return loss_value

    @tf.function
    def test_step(x, y):
        val_logits = model(x, training=False)
        val_acc_metric.update_state(y, val_logits)

    epochs = 2
    first_losses, train_accs, val_accs = [], [], []
    for epoch in range(epochs):
        # Iterate over the batches of the dataset.
        for step, (x_batch_train, y_batch_train) in enumerate(train_dataset):
            loss_value = train_step(x_batch_train, y_batch_train)
            first_losses.append(float(loss_value))

        # Display metrics at the end of each epoch.
        train_accs.append(float(train_acc_metric.result()))
        # Reset training metrics at the end of each epoch
        train_acc_metric.reset_state()

        # Run a validation loop at the end of each epoch.
        for x_batch_val, y_batch_val in val_dataset:
            test_step(x_batch_val, y_batch_val)
        val_accs.append(float(val_acc_metric.result()))
        val_acc_metric.reset_state()

    assert np.mean(first_losses[-4:]) < 0.5 * np.mean(first_losses[:4])
    assert train_accs[1] > train_accs[0] and val_accs[-1] > 0.8  # chance is 0.1
    # The validation metric equals the accuracy computed independently from the predictions.
    x_val = np.concatenate([b[0] for b in val_dataset])
    y_val = np.concatenate([b[1] for b in val_dataset])
    assert val_accs[-1] == np.mean(model.predict(x_val, verbose=0).argmax(1) == y_val)


def test_low_level_handling_of_losses_tracked_by_the_model(rng):
    train_dataset, _ = _datasets(rng)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    train_acc_metric = keras.metrics.SparseCategoricalAccuracy()

    class ActivityRegularizationLayer(keras.layers.Layer):
        def call(self, inputs):
            self.add_loss(1e-2 * tf.reduce_sum(inputs))
            return inputs

    inputs = keras.Input(shape=(784,), name="digits")
    x = keras.layers.Dense(64, activation="relu")(inputs)
    # Insert activity regularization as a layer
    x = ActivityRegularizationLayer()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(10, name="predictions")(x)

    model = keras.Model(inputs=inputs, outputs=outputs)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss_value = loss_fn(y, logits)
            # Add any extra losses created during the forward pass.
            loss_value += sum(model.losses)
        grads = tape.gradient(loss_value, model.trainable_weights)
        optimizer.apply(grads, model.trainable_weights)
        train_acc_metric.update_state(y, logits)
        return loss_value

    first_dense = model.layers[1]
    x0 = train_dataset[0][0]
    penalty_before = float(np.maximum(x0 @ first_dense.kernel.numpy() + first_dense.bias.numpy(), 0).sum())
    losses = [float(train_step(xb, yb)) for _ in range(2) for xb, yb in train_dataset]
    penalty_after = float(np.maximum(x0 @ first_dense.kernel.numpy() + first_dense.bias.numpy(), 0).sum())
    assert np.all(np.isfinite(losses)) and np.mean(losses[-4:]) < np.mean(losses[:4])
    # The activity penalty's gradient reached the first layer: its activations shrank.
    assert penalty_after < penalty_before


def test_end_to_end_example_a_gan_training_loop_from_scratch(rng):
    discriminator = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(64, (3, 3), strides=(2, 2), padding="same"),
            keras.layers.LeakyReLU(negative_slope=0.2),
            keras.layers.Conv2D(128, (3, 3), strides=(2, 2), padding="same"),
            keras.layers.LeakyReLU(negative_slope=0.2),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(1),
        ],
        name="discriminator",
    )
    latent_dim = 128

    generator = keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            # We want to generate 128 coefficients to reshape into a 7x7x128 map
            keras.layers.Dense(7 * 7 * 128),
            keras.layers.LeakyReLU(negative_slope=0.2),
            keras.layers.Reshape((7, 7, 128)),
            keras.layers.Conv2DTranspose(128, (4, 4), strides=(2, 2), padding="same"),
            keras.layers.LeakyReLU(negative_slope=0.2),
            keras.layers.Conv2DTranspose(128, (4, 4), strides=(2, 2), padding="same"),
            keras.layers.LeakyReLU(negative_slope=0.2),
            keras.layers.Conv2D(1, (7, 7), padding="same", activation="sigmoid"),
        ],
        name="generator",
    )
    batch_size = 32

    # Instantiate one optimizer for the discriminator and another for the generator.
    d_optimizer = keras.optimizers.Adam(learning_rate=0.0003)
    g_optimizer = keras.optimizers.Adam(learning_rate=0.0004)

    # Instantiate a loss function.
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def train_step(real_images):
        # Sample random points in the latent space
        random_latent_vectors = tf.random.normal(shape=(batch_size, latent_dim))
        # Decode them to fake images
        generated_images = generator(random_latent_vectors)
        # Combine them with real images
        combined_images = tf.concat([generated_images, real_images], axis=0)

        # Assemble labels discriminating real from fake images
        labels = tf.concat(
            [tf.ones((batch_size, 1)), tf.zeros((real_images.shape[0], 1))], axis=0
        )
        # Add random noise to the labels - important trick!
        labels += 0.05 * tf.random.uniform(labels.shape)

        # Train the discriminator
        with tf.GradientTape() as tape:
            predictions = discriminator(combined_images)
            d_loss = loss_fn(labels, predictions)
        grads = tape.gradient(d_loss, discriminator.trainable_weights)
        d_optimizer.apply(grads, discriminator.trainable_weights)

        # Sample random points in the latent space
        random_latent_vectors = tf.random.normal(shape=(batch_size, latent_dim))
        # Assemble labels that say "all real images"
        misleading_labels = tf.zeros((batch_size, 1))

        # Train the generator (note that we should *not* update the weights
        # of the discriminator)!
        with tf.GradientTape() as tape:
            predictions = discriminator(generator(random_latent_vectors))
            g_loss = loss_fn(misleading_labels, predictions)
        grads = tape.gradient(g_loss, generator.trainable_weights)
        g_optimizer.apply(grads, generator.trainable_weights)
        return d_loss, g_loss, generated_images

    # Small random "images" in place of MNIST's digits: bright strokes on 28x28 frames.
    real = (rng.random((64, 28, 28, 1)) > 0.8).astype("float32")
    dataset = [real[i:i + batch_size] for i in range(0, len(real), batch_size)]
    g_before = generator.get_weights()
    d_losses, g_losses = [], []
    for epoch in range(2):
        for step, real_images in enumerate(dataset):
            d_loss, g_loss, generated_images = train_step(real_images)
            d_losses.append(float(d_loss))
            g_losses.append(float(g_loss))
    assert all(np.isfinite(v) and 0.0 < v < 5.0 for v in d_losses + g_losses)
    assert generated_images.shape == (batch_size, 28, 28, 1)
    assert all(not np.allclose(a, b) for a, b in zip(g_before, generator.get_weights()))
