"""keras-io "The Sequential model" (guides/sequential_model.py, Keras 3) ported to tlkit.

The guide's code is kept as written; what a port changes:
- ``import keras`` / ``from keras import layers`` -> ``import tlkit as keras`` / ``from tlkit import layers``;
- ``import tensorflow as tf``: the guide uses only ``tf.ones``, which ``tf`` below maps onto ``tlkit.ops``;
- the transfer-learning blueprints are prose in the guide (``model.load_weights(...)``, ``keras.applications.
  Xception``): they run here with a small Sequential base, then train.
Each section ends with checks that the numbers are sane."""
import types

import numpy as np

import tlkit as keras
from tlkit import layers, ops

tf = types.SimpleNamespace(ones=ops.ones)


def test_when_to_use_a_sequential_model():
    # Define Sequential model with 3 layers
    model = keras.Sequential(
        [
            layers.Dense(2, activation="relu", name="layer1"),
            layers.Dense(3, activation="relu", name="layer2"),
            layers.Dense(4, name="layer3"),
        ]
    )
    # Call model on a test input
    x = tf.ones((3, 3))
    y = model(x)

    # Create 3 layers
    layer1 = layers.Dense(2, activation="relu", name="layer1")
    layer2 = layers.Dense(3, activation="relu", name="layer2")
    layer3 = layers.Dense(4, name="layer3")

    # Call layers on a test input
    x = tf.ones((3, 3))
    y2 = layer3(layer2(layer1(x)))

    assert tuple(y.shape) == tuple(y2.shape) == (3, 4)
    # The model is exactly its layers applied in turn.
    h = np.ones((3, 3))
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        h = h @ kernel + bias
        h = np.maximum(h, 0) if layer.name != "layer3" else h
    np.testing.assert_allclose(np.asarray(y), h, rtol=1e-5, atol=1e-6)


def test_creating_a_sequential_model():
    model = keras.Sequential(
        [
            layers.Dense(2, activation="relu"),
            layers.Dense(3, activation="relu"),
            layers.Dense(4),
        ]
    )
    assert len(model.layers) == 3

    model = keras.Sequential()
    model.add(layers.Dense(2, activation="relu"))
    model.add(layers.Dense(3, activation="relu"))
    model.add(layers.Dense(4))

    model.pop()
    print(len(model.layers))  # 2
    assert len(model.layers) == 2

    model = keras.Sequential(name="my_sequential")
    model.add(layers.Dense(2, activation="relu", name="layer1"))
    model.add(layers.Dense(3, activation="relu", name="layer2"))
    model.add(layers.Dense(4, name="layer3"))
    assert model.name == "my_sequential" and [l.name for l in model.layers] == ["layer1", "layer2", "layer3"]


def test_specifying_the_input_shape_in_advance(capsys):
    layer = layers.Dense(3)
    assert layer.weights == []  # Empty

    # Call layer on a test input
    x = tf.ones((1, 4))
    y = layer(x)
    assert [tuple(w.shape) for w in layer.weights] == [(4, 3), (3,)]  # Now it has weights

    model = keras.Sequential(
        [
            layers.Dense(2, activation="relu"),
            layers.Dense(3, activation="relu"),
            layers.Dense(4),
        ]
    )  # No weights at this stage!

    # Call the model on a test input
    x = tf.ones((1, 4))
    y = model(x)
    print("Number of weights after calling the model:", len(model.weights))  # 6
    assert len(model.weights) == 6

    model.summary()

    model = keras.Sequential()
    model.add(keras.Input(shape=(4,)))
    model.add(layers.Dense(2, activation="relu"))

    model.summary()
    assert len(model.layers) == 1  # the Input is not a layer

    model = keras.Sequential()
    model.add(layers.Dense(2, activation="relu", input_shape=(4,)))

    model.summary()
    assert len(model.weights) == 2 and model.output_shape == (None, 2)
    assert "Total params: 10" in capsys.readouterr().out


def test_a_common_debugging_workflow_add_and_summary(capsys):
    model = keras.Sequential()
    model.add(keras.Input(shape=(250, 250, 3)))  # 250x250 RGB images
    model.add(layers.Conv2D(32, 5, strides=2, activation="relu"))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.MaxPooling2D(3))

    # Can you guess what the current output shape is at this point? Probably not.
    # Let's just print it:
    model.summary()

    # The answer was: (40, 40, 32), so we can keep downsampling...
    assert model.output_shape == (None, 40, 40, 32)
    assert "(None, 40, 40, 32)" in capsys.readouterr().out

    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.MaxPooling2D(3))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.MaxPooling2D(2))

    # And now?
    model.summary()
    assert model.output_shape == (None, 4, 4, 32)

    # Now that we have 4x4 feature maps, time to apply global max pooling.
    model.add(layers.GlobalMaxPooling2D())

    # Finally, we add a classification layer.
    model.add(layers.Dense(10))
    assert model.output_shape == (None, 10)


def test_feature_extraction_with_a_sequential_model():
    initial_model = keras.Sequential(
        [
            keras.Input(shape=(250, 250, 3)),
            layers.Conv2D(32, 5, strides=2, activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
        ]
    )
    feature_extractor = keras.Model(
        inputs=initial_model.inputs,
        outputs=[layer.output for layer in initial_model.layers],
    )

    # Call feature extractor on test input.
    x = tf.ones((1, 250, 250, 3))
    features = feature_extractor(x)
    assert [tuple(f.shape) for f in features] == [(1, 123, 123, 32), (1, 121, 121, 32), (1, 119, 119, 32)]
    np.testing.assert_allclose(np.asarray(features[-1]), initial_model.predict(np.ones((1, 250, 250, 3)), verbose=0),
                               rtol=1e-4, atol=1e-5)

    initial_model = keras.Sequential(
        [
            keras.Input(shape=(250, 250, 3)),
            layers.Conv2D(32, 5, strides=2, activation="relu"),
            layers.Conv2D(32, 3, activation="relu", name="my_intermediate_layer"),
            layers.Conv2D(32, 3, activation="relu"),
        ]
    )
    feature_extractor = keras.Model(
        inputs=initial_model.inputs,
        outputs=initial_model.get_layer(name="my_intermediate_layer").output,
    )
    # Call feature extractor on test input.
    x = tf.ones((1, 250, 250, 3))
    features = feature_extractor(x)
    assert tuple(features.shape) == (1, 121, 121, 32)


def test_transfer_learning_with_a_sequential_model(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 784)).astype("float32")
    y = (x[:, :10] > 0).argmax(axis=1)

    # First blueprint: freeze all layers except the last one.
    model = keras.Sequential([
        keras.Input(shape=(784,)),
        layers.Dense(32, activation='relu'),
        layers.Dense(32, activation='relu'),
        layers.Dense(32, activation='relu'),
        layers.Dense(10),
    ])
    # Presumably you would want to first load pre-trained weights.
    model.save_weights(tmp_path / "pretrained.weights.h5")
    model.load_weights(tmp_path / "pretrained.weights.h5")

    # Freeze all layers except the last one.
    for layer in model.layers[:-1]:
        layer.trainable = False

    frozen = [w.numpy().copy() for l in model.layers[:-1] for w in l.weights]
    # Recompile and train (this will only update the weights of the last layer).
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for before, w in zip(frozen, [w for l in model.layers[:-1] for w in l.weights]):
        np.testing.assert_array_equal(before, w.numpy())

    # Second blueprint: a frozen base (here a small Sequential standing for keras.applications.Xception)
    # under a new classifier.
    base_model = keras.Sequential([keras.Input(shape=(784,)), layers.Dense(64, activation="relu")])

    # Freeze the base model
    base_model.trainable = False

    # Use a Sequential model to add a trainable classifier on top
    model = keras.Sequential([
        base_model,
        layers.Dense(10),
    ])

    # Compile & train
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    base_before = [w.copy() for w in base_model.get_weights()]
    history = model.fit(x, y, epochs=4, verbose=0)
    assert len(model.weights) == 4 and len(model.trainable_weights) == 2
    assert history.history["loss"][-1] < history.history["loss"][0]
    for before, after in zip(base_before, base_model.get_weights()):
        np.testing.assert_array_equal(before, after)
