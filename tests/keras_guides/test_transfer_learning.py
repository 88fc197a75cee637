"""keras-io "Transfer learning & fine-tuning" (guides/transfer_learning.py, Keras 3) ported to tlkit.

The guide's code is kept as written; what a port changes:
- ``import keras`` / ``from keras import layers`` -> ``import tlkit as keras`` / ``from tlkit import layers``;
- ``keras.applications.Xception(weights="imagenet", input_shape=(150, 150, 3), include_top=False)`` becomes
  ``tlkit.zoo.MobileNetV2(weights=None, input_shape=(64, 64, 3), include_top=False)``: tlkit has no Xception,
  and a test downloads no weights (the workflow, freezing and fine-tuning are the same);
- the cats-vs-dogs data from ``tensorflow_datasets`` become small random pictures whose label is whether the
  left or the right half is brighter; the ``tf.data`` pipeline (``map``, ``batch``, ``prefetch``, ``cache``)
  becomes arrays on which the same Keras layers (Resizing, RandomFlip, RandomRotation) run, then ``fit`` on
  arrays; the matplotlib previews are left out; epochs are kept few.
Each section ends with checks that the numbers are sane."""
import numpy as np

import tlkit as keras
from tlkit import layers
from tlkit.zoo import MobileNetV2


def test_freezing_layers_understanding_trainable(capsys):
    layer = keras.layers.Dense(3)
    layer.build((None, 4))  # Create the weights

    print("weights:", len(layer.weights))
    print("trainable_weights:", len(layer.trainable_weights))
    print("non_trainable_weights:", len(layer.non_trainable_weights))

    layer = keras.layers.BatchNormalization()
    layer.build((None, 4))  # Create the weights

    print("weights:", len(layer.weights))
    print("trainable_weights:", len(layer.trainable_weights))
    print("non_trainable_weights:", len(layer.non_trainable_weights))

    layer = keras.layers.Dense(3)
    layer.build((None, 4))  # Create the weights
    layer.trainable = False  # Freeze the layer

    print("weights:", len(layer.weights))
    print("trainable_weights:", len(layer.trainable_weights))
    print("non_trainable_weights:", len(layer.non_trainable_weights))
    counts = [int(line.split(": ")[1]) for line in capsys.readouterr().out.splitlines()]
    assert counts == [2, 2, 0, 4, 2, 2, 2, 0, 2]

    # Make a model with 2 layers
    layer1 = keras.layers.Dense(3, activation="relu")
    layer2 = keras.layers.Dense(3, activation="sigmoid")
    model = keras.Sequential([keras.Input(shape=(3,)), layer1, layer2])

    # Freeze the first layer
    layer1.trainable = False

    # Keep a copy of the weights of layer1 for later reference
    initial_layer1_weights_values = layer1.get_weights()
    initial_layer2_weights_values = layer2.get_weights()

    # Train the model
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.random.random((2, 3)), np.random.random((2, 3)), verbose=0)

    # Check that the weights of layer1 have not changed during training
    final_layer1_weights_values = layer1.get_weights()
    np.testing.assert_allclose(
        initial_layer1_weights_values[0], final_layer1_weights_values[0]
    )
    np.testing.assert_allclose(
        initial_layer1_weights_values[1], final_layer1_weights_values[1]
    )
    assert not np.allclose(initial_layer2_weights_values[0], layer2.get_weights()[0])  # the other one trained

    inner_model = keras.Sequential(
        [
            keras.Input(shape=(3,)),
            keras.layers.Dense(3, activation="relu"),
            keras.layers.Dense(3, activation="relu"),
        ]
    )

    model = keras.Sequential(
        [
            keras.Input(shape=(3,)),
            inner_model,
            keras.layers.Dense(3, activation="sigmoid"),
        ]
    )

    model.trainable = False  # Freeze the outer model

    assert inner_model.trainable == False  # All layers in `model` are now frozen
    assert inner_model.layers[0].trainable == False  # `trainable` is propagated recursively


def _cats_vs_dogs(n, seed):
    # Pictures of varied sizes; label 1 when the left half is brighter than the right.
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        h, w = rng.integers(56, 80, size=2)
        image = rng.integers(0, 200, size=(h, w, 3)).astype("float32")
        label = int(rng.integers(0, 2))
        image[:, : w // 2] += 55 * label
        image[:, w // 2:] += 55 * (1 - label)
        images.append(image)
        labels.append(label)
    return images, np.array(labels, "float32")


def test_an_end_to_end_example_fine_tuning_an_image_classifier():
    train_ds, validation_ds = _cats_vs_dogs(160, 0), _cats_vs_dogs(64, 1)

    resize_fn = keras.layers.Resizing(64, 64)

    train_x = np.stack([np.asarray(resize_fn(x)) for x in train_ds[0]])
    validation_x = np.stack([np.asarray(resize_fn(x)) for x in validation_ds[0]])
    assert train_x.shape == (160, 64, 64, 3)

    augmentation_layers = [
        layers.RandomFlip("horizontal"),
        layers.RandomRotation(0.1),
    ]

    def data_augmentation(x):
        for layer in augmentation_layers:
            x = layer(x)
        return x

    # A flip swaps which half is brighter: the label follows it.
    augmented = np.asarray(data_augmentation(train_x))
    flipped = np.abs(augmented[:, :, ::-1] - train_x).mean(axis=(1, 2, 3)) < np.abs(augmented - train_x).mean(
        axis=(1, 2, 3))
    train_y = np.where(flipped, 1 - train_ds[1], train_ds[1])
    assert 0 < flipped.mean() < 1

    base_model = MobileNetV2(
        weights=None,  # The guide loads weights pre-trained on ImageNet.
        input_shape=(64, 64, 3),
        include_top=False,
    )  # Do not include the ImageNet classifier at the top.

    # Freeze the base_model
    base_model.trainable = False

    # Create new model on top
    inputs = keras.Input(shape=(64, 64, 3))

    # Pre-trained Xception weights requires that input be scaled
    # from (0, 255) to a range of (-1., +1.), the rescaling layer
    # outputs: `(inputs * scale) + offset`
    scale_layer = keras.layers.Rescaling(scale=1 / 127.5, offset=-1)
    x = scale_layer(inputs)

    # The base model contains batchnorm layers. We want to keep them in inference mode
    # when we unfreeze the base model for fine-tuning, so we make sure that the
    # base_model is running in inference mode here.
    x = base_model(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)  # Regularize with dropout
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)

    model.summary(show_trainable=True)
    assert len(model.trainable_weights) == 2

    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy()],
    )

    epochs = 2
    print("Fitting the top layer of the model")
    base_before = [w.copy() for w in base_model.get_weights()]
    history = model.fit(augmented, train_y, epochs=epochs, batch_size=32,
                        validation_data=(validation_x, validation_ds[1]), verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for before, after in zip(base_before, base_model.get_weights()):
        np.testing.assert_array_equal(before, after)  # frozen: the base did not move

    # Unfreeze the base_model. Note that it keeps running in inference mode
    # since we passed `training=False` when calling it. This means that
    # the batchnorm layers will not update their batch statistics.
    # This prevents the batchnorm layers from undoing all the training
    # we've done so far.
    base_model.trainable = True
    model.summary(show_trainable=True)

    model.compile(
        optimizer=keras.optimizers.Adam(1e-5),  # Low learning rate
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy()],
    )

    epochs = 1
    print("Fitting the end-to-end model")
    bn = next(l for l in base_model.layers if type(l).__name__ == "BatchNormalization")
    stats_before = [w.numpy().copy() for w in bn.non_trainable_weights]
    base_before = [w.copy() for w in base_model.get_weights()]
    model.fit(augmented, train_y, epochs=epochs, batch_size=32, verbose=0)
    assert len(model.trainable_weights) > 100
    changed = [not np.array_equal(b, a) for b, a in zip(base_before, base_model.get_weights())]
    assert sum(changed) > 50  # the base trains now (an untrained base in inference mode saturates: not all)
    for before, after in zip(stats_before, bn.non_trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())  # ...with its batch statistics kept

    print("Test dataset evaluation")
    loss, accuracy = model.evaluate(validation_x, validation_ds[1], verbose=0)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0
