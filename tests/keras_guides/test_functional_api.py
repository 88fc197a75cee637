"""keras-io "The Functional API" (guides/functional_api.py) ported to tlkit.

The guide's code is kept as written; what a port changes:
- ``import keras`` / ``from keras import layers`` -> ``import tlkit as keras`` / ``from tlkit import layers``;
- ``import tensorflow as tf``: the guide uses ``tf.matmul``, ``tf.zeros`` and ``tf.stack``, which ``tf`` below maps
  onto ``tlkit.ops``;
- MNIST and CIFAR-10 become small random arrays with a learnable label, the text data is shorter, and
  epochs are kept few; ``verbose=0`` keeps the log quiet;
- ``keras.applications.VGG19()`` (ImageNet weights, a download) becomes ``tlkit.zoo.VGG16(weights=None)``:
  tlkit has no VGG19, and the section only reads the layer graph;
- ``model.save("path_to_my_model.keras")`` writes into pytest's temporary folder.
Each section ends with checks that the numbers are sane."""
import os
import types

import numpy as np
import pytest

import tlkit as keras
from tlkit import layers, ops
from tests.keras_guides.random_data import mnist_like
from tlkit.zoo import VGG16

tf = types.SimpleNamespace(matmul=ops.matmul, zeros=ops.zeros, stack=ops.stack,
                           keras=types.SimpleNamespace(applications=types.SimpleNamespace(
                               VGG19=lambda: VGG16(weights=None))))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_introduction_training_and_saving():
    inputs = keras.Input(shape=(784,))
    img_inputs = keras.Input(shape=(32, 32, 3))
    assert inputs.shape == (None, 784) and inputs.dtype == "float32" and img_inputs.shape == (None, 32, 32, 3)

    dense = layers.Dense(64, activation="relu")
    x = dense(inputs)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(10)(x)

    model = keras.Model(inputs=inputs, outputs=outputs, name="mnist_model")
    model.summary()

    keras.utils.plot_model(model, "my_first_model.png")
    keras.utils.plot_model(model, "my_first_model_with_shape_info.png", show_shapes=True)
    assert os.path.getsize("my_first_model_with_shape_info.png") > 1000

    (x_train, y_train), (x_test, y_test) = mnist_like(1500), mnist_like(300)

    x_train = x_train.reshape(1500, 784).astype("float32") / 255
    x_test = x_test.reshape(300, 784).astype("float32") / 255

    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=keras.optimizers.RMSprop(),
        metrics=["accuracy"],
    )

    history = model.fit(x_train, y_train, batch_size=64, epochs=2, validation_split=0.2, verbose=0)

    test_scores = model.evaluate(x_test, y_test, verbose=2)
    print("Test loss:", test_scores[0])
    print("Test accuracy:", test_scores[1])
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert test_scores[1] > 0.5  # chance is 0.1

    model.save("my_model.keras")
    predictions = model.predict(x_test, verbose=0)
    del model
    # Recreate the exact same model purely from the file:
    model = keras.models.load_model("my_model.keras")
    np.testing.assert_allclose(model.predict(x_test, verbose=0), predictions, rtol=1e-5, atol=1e-6)
    assert np.isclose(model.evaluate(x_test, y_test, verbose=0)[0], test_scores[0], rtol=1e-5)


def _encoder(name):
    encoder_input = keras.Input(shape=(28, 28, 1), name=name)
    x = layers.Conv2D(16, 3, activation="relu")(encoder_input)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(3)(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.Conv2D(16, 3, activation="relu")(x)
    encoder_output = layers.GlobalMaxPooling2D()(x)
    return encoder_input, encoder_output


def test_one_graph_of_layers_several_models_and_models_as_layers():
    encoder_input, encoder_output = _encoder("img")
    encoder = keras.Model(encoder_input, encoder_output, name="encoder")
    encoder.summary()

    x = layers.Reshape((4, 4, 1))(encoder_output)
    x = layers.Conv2DTranspose(16, 3, activation="relu")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu")(x)
    x = layers.UpSampling2D(3)(x)
    x = layers.Conv2DTranspose(16, 3, activation="relu")(x)
    decoder_output = layers.Conv2DTranspose(1, 3, activation="relu")(x)

    autoencoder = keras.Model(encoder_input, decoder_output, name="autoencoder")
    autoencoder.summary()
    assert autoencoder.output_shape == (None, 28, 28, 1) and encoder.output_shape == (None, 16)

    encoder_input, encoder_output = _encoder("original_img")
    encoder = keras.Model(encoder_input, encoder_output, name="encoder")

    decoder_input = keras.Input(shape=(16,), name="encoded_img")
    x = layers.Reshape((4, 4, 1))(decoder_input)
    x = layers.Conv2DTranspose(16, 3, activation="relu")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu")(x)
    x = layers.UpSampling2D(3)(x)
    x = layers.Conv2DTranspose(16, 3, activation="relu")(x)
    decoder_output = layers.Conv2DTranspose(1, 3, activation="relu")(x)

    decoder = keras.Model(decoder_input, decoder_output, name="decoder")
    decoder.summary()

    autoencoder_input = keras.Input(shape=(28, 28, 1), name="img")
    encoded_img = encoder(autoencoder_input)
    decoded_img = decoder(encoded_img)
    autoencoder = keras.Model(autoencoder_input, decoded_img, name="autoencoder")
    autoencoder.summary()

    # Beyond the guide: the nested models hold the weights, and the autoencoder trains through both.
    assert len(autoencoder.weights) == len(encoder.weights) + len(decoder.weights) == 16
    images = mnist_like(64)[0][..., None].astype("float32") / 255
    autoencoder.compile(optimizer="adam", loss="mse")
    history = autoencoder.fit(images, images, epochs=3, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    np.testing.assert_allclose(autoencoder.predict(images[:4], verbose=0),
                               decoder.predict(encoder.predict(images[:4], verbose=0), verbose=0), rtol=1e-4,
                               atol=1e-6)
    autoencoder.save("autoencoder.keras")
    reloaded = keras.models.load_model("autoencoder.keras")
    np.testing.assert_allclose(reloaded.predict(images[:4], verbose=0), autoencoder.predict(images[:4], verbose=0),
                               rtol=1e-5, atol=1e-6)

    def get_model():
        inputs = keras.Input(shape=(128,))
        outputs = layers.Dense(1)(inputs)
        return keras.Model(inputs, outputs)

    model1 = get_model()
    model2 = get_model()
    model3 = get_model()

    inputs = keras.Input(shape=(128,))
    y1 = model1(inputs)
    y2 = model2(inputs)
    y3 = model3(inputs)
    outputs = layers.average([y1, y2, y3])
    ensemble_model = keras.Model(inputs=inputs, outputs=outputs)

    x = np.random.default_rng(1).normal(size=(4, 128)).astype("float32")
    expected = sum(m.predict(x, verbose=0) for m in (model1, model2, model3)) / 3
    np.testing.assert_allclose(ensemble_model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_models_with_multiple_inputs_and_outputs():
    num_tags = 12  # Number of unique issue tags
    num_words = 10000  # Size of vocabulary obtained when preprocessing text data
    num_departments = 4  # Number of departments for predictions

    title_input = keras.Input(shape=(None,), name="title")  # Variable-length sequence of ints
    body_input = keras.Input(shape=(None,), name="body")  # Variable-length sequence of ints
    tags_input = keras.Input(shape=(num_tags,), name="tags")  # Binary vectors of size `num_tags`

    # Embed each word in the title into a 64-dimensional vector
    title_features = layers.Embedding(num_words, 64)(title_input)
    # Embed each word in the text into a 64-dimensional vector
    body_features = layers.Embedding(num_words, 64)(body_input)

    # Reduce sequence of embedded words in the title into a single 128-dimensional vector
    title_features = layers.LSTM(128)(title_features)
    # Reduce sequence of embedded words in the body into a single 32-dimensional vector
    body_features = layers.LSTM(32)(body_features)

    # Merge all available features into a single large vector via concatenation
    x = layers.concatenate([title_features, body_features, tags_input])

    # Stick a logistic regression for priority prediction on top of the features
    priority_pred = layers.Dense(1, name="priority")(x)
    # Stick a department classifier on top of the features
    department_pred = layers.Dense(num_departments, name="department")(x)

    # Instantiate an end-to-end model predicting both priority and department
    model = keras.Model(
        inputs=[title_input, body_input, tags_input],
        outputs=[priority_pred, department_pred],
    )

    keras.utils.plot_model(model, "multi_input_and_output_model.png", show_shapes=True)

    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=[
            keras.losses.BinaryCrossentropy(from_logits=True),
            keras.losses.CategoricalCrossentropy(from_logits=True),
        ],
        loss_weights=[1.0, 0.2],
    )

    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss={
            "priority": keras.losses.BinaryCrossentropy(from_logits=True),
            "department": keras.losses.CategoricalCrossentropy(from_logits=True),
        },
        loss_weights={"priority": 1.0, "department": 0.2},
    )

    # Dummy input data
    title_data = np.random.randint(num_words, size=(256, 10))
    body_data = np.random.randint(num_words, size=(256, 20))
    tags_data = np.random.randint(2, size=(256, num_tags)).astype("float32")

    # Dummy target data
    priority_targets = np.random.random(size=(256, 1))
    dept_targets = np.random.randint(2, size=(256, num_departments))

    history = model.fit(
        {"title": title_data, "body": body_data, "tags": tags_data},
        {"priority": priority_targets, "department": dept_targets},
        epochs=2,
        batch_size=32,
        verbose=0,
    )
    h = history.history
    assert h["loss"][-1] < h["loss"][0]
    # The total is the weighted sum of the two outputs' losses.
    np.testing.assert_allclose(h["loss"], np.add(h["priority_loss"], np.multiply(h["department_loss"], 0.2)),
                               rtol=1e-4)


def test_a_toy_resnet_model():
    inputs = keras.Input(shape=(32, 32, 3), name="img")
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    block_1_output = layers.MaxPooling2D(3)(x)

    x = layers.Conv2D(64, 3, activation="relu", padding="same")(block_1_output)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    block_2_output = layers.add([x, block_1_output])

    x = layers.Conv2D(64, 3, activation="relu", padding="same")(block_2_output)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    block_3_output = layers.add([x, block_2_output])

    x = layers.Conv2D(64, 3, activation="relu")(block_3_output)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(10)(x)

    model = keras.Model(inputs, outputs, name="toy_resnet")
    model.summary()

    keras.utils.plot_model(model, "mini_resnet.png", show_shapes=True)

    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(240, 32, 32, 3)).astype("uint8")
    y_train = (x_train[..., 0].mean(axis=(1, 2)) > 127.5).astype("int64")[:, None]  # a learnable label

    x_train = x_train.astype("float32") / 255.0
    y_train = keras.utils.to_categorical(y_train, 10)

    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["acc"],
    )
    # We restrict the data to the first 1000 samples so as to limit execution time
    # on Colab. Try to train on the entire dataset until convergence!
    history = model.fit(x_train[:1000], y_train[:1000], batch_size=64, epochs=2, validation_split=0.2, verbose=0)
    h = history.history
    assert sorted(h) == ["acc", "loss", "val_acc", "val_loss"]
    assert h["loss"][-1] < h["loss"][0] < np.log(10) * 1.5


def test_shared_layers_and_reusing_nodes():
    # Embedding for 1000 unique words mapped to 128-dimensional vectors
    shared_embedding = layers.Embedding(1000, 128)

    # Variable-length sequence of integers
    text_input_a = keras.Input(shape=(None,), dtype="int32")

    # Variable-length sequence of integers
    text_input_b = keras.Input(shape=(None,), dtype="int32")

    # Reuse the same layer to encode both inputs
    encoded_input_a = shared_embedding(text_input_a)
    encoded_input_b = shared_embedding(text_input_b)
    both = keras.Model([text_input_a, text_input_b], [encoded_input_a, encoded_input_b])
    assert len(both.weights) == 1  # one table for both
    a, b = both([np.array([[1, 2]]), np.array([[2, 1]])])
    np.testing.assert_array_equal(np.asarray(a)[0, ::-1], np.asarray(b)[0])

    vgg19 = tf.keras.applications.VGG19()

    features_list = [layer.output for layer in vgg19.layers]

    feat_extraction_model = keras.Model(inputs=vgg19.input, outputs=features_list)

    img = np.random.random((1, 224, 224, 3)).astype("float32")
    extracted_features = feat_extraction_model(img)
    assert len(extracted_features) == len(vgg19.layers)
    np.testing.assert_allclose(np.asarray(extracted_features[-1]), vgg19.predict(img, verbose=0), rtol=1e-4,
                               atol=1e-6)


def test_extend_the_api_using_custom_layers():
    class CustomDense(layers.Layer):
        def __init__(self, units=32):
            super().__init__()
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(
                shape=(input_shape[-1], self.units),
                initializer="random_normal",
                trainable=True,
            )
            self.b = self.add_weight(
                shape=(self.units,), initializer="random_normal", trainable=True
            )

        def call(self, inputs):
            return tf.matmul(inputs, self.w) + self.b

        def get_config(self):
            return {"units": self.units}

    inputs = keras.Input((4,))
    outputs = CustomDense(10)(inputs)

    model = keras.Model(inputs, outputs)
    config = model.get_config()

    new_model = keras.Model.from_config(config, custom_objects={"CustomDense": CustomDense})
    assert new_model.output_shape == (None, 10) and type(new_model.layers[-1]) is CustomDense
    new_model.set_weights(model.get_weights())
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(new_model.predict(x, verbose=0), x @ model.get_weights()[0] + model.get_weights()[1],
                               rtol=1e-5)


def test_mix_and_match_api_styles():
    units = 32
    timesteps = 10
    input_dim = 5

    # Define a Functional model
    inputs = keras.Input((None, units))
    x = layers.GlobalAveragePooling1D()(inputs)
    outputs = layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)

    class CustomRNN(layers.Layer):
        def __init__(self):
            super().__init__()
            self.units = units
            self.projection_1 = layers.Dense(units=units, activation="tanh")
            self.projection_2 = layers.Dense(units=units, activation="tanh")
            # Our previously-defined Functional model
            self.classifier = model

        def call(self, inputs):
            outputs = []
            state = tf.zeros(shape=(inputs.shape[0], self.units))
            for t in range(inputs.shape[1]):
                x = inputs[:, t, :]
                h = self.projection_1(x)
                y = h + self.projection_2(state)
                state = y
                outputs.append(y)
            features = tf.stack(outputs, axis=1)
            print(features.shape)
            return self.classifier(features)

    rnn_model = CustomRNN()
    out = rnn_model(tf.zeros((1, timesteps, input_dim)))
    assert tuple(out.shape) == (1, 1)

    batch_size = 16

    class CustomRNN(layers.Layer):
        def __init__(self):
            super().__init__()
            self.units = units
            self.projection_1 = layers.Dense(units=units, activation="tanh")
            self.projection_2 = layers.Dense(units=units, activation="tanh")
            self.classifier = layers.Dense(1)

        def call(self, inputs):
            outputs = []
            state = tf.zeros(shape=(inputs.shape[0], self.units))
            for t in range(inputs.shape[1]):
                x = inputs[:, t, :]
                h = self.projection_1(x)
                y = h + self.projection_2(state)
                state = y
                outputs.append(y)
            features = tf.stack(outputs, axis=1)
            return self.classifier(features)

    # Note that you specify a static batch size for the inputs with the `batch_shape`
    # arg, because the inner computation of `CustomRNN` requires a static batch size
    # (when you create the `state` zeros tensor).
    inputs = keras.Input(batch_shape=(batch_size, timesteps, input_dim))
    x = layers.Conv1D(32, 3)(inputs)
    outputs = CustomRNN()(x)

    model = keras.Model(inputs, outputs)

    rnn_model = CustomRNN()
    _ = rnn_model(tf.zeros((1, 10, 5)))
    assert model.output_shape[1:] == (timesteps - 2, 1)

    # Beyond the guide: the mixed model trains through the Python loop of its custom layer.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, timesteps, input_dim)).astype("float32")
    y = np.cumsum(x[..., :1], axis=1)[:, 2:] * 0.3
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y, batch_size=batch_size, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
