"""VGG16 with Keras's layer names, arguments and rules, and its preprocessing.

>>> from tlkit.zoo import VGG16
>>> base = VGG16(include_top=False, weights="imagenet", input_shape=(224, 224, 3))
>>> from tlkit.zoo.vgg16 import preprocess_input, decode_predictions
"""
from tlkit.engine.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from tlkit.zoo import imagenet
from tlkit.zoo.loading import check_zoo_arguments, finish_zoo_model, initial_weights
from tlkit.zoo.preprocessing import preprocess_input as _preprocess

BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
PREPROCESSING = "caffe"
CONV_LAYERS = [f"block{b}_conv{c}" for b, (_, convs) in enumerate(BLOCKS, start=1) for c in range(1, convs + 1)]
TOP_LAYERS = ["fc1", "fc2", "predictions"]
# torchvision's vgg16 module names: features.N counts conv, relu and pool modules alike.
TORCHVISION_NAMES = dict(zip(CONV_LAYERS, [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]))
TORCHVISION_NAMES.update(fc1="classifier.0", fc2="classifier.3", predictions="classifier.6")
# torchvision flattens block5_pool channels-first (C, H, W) before fc1; tlkit flattens (H, W, C).
FLATTENED_BEFORE = {"fc1": "block5_conv3"}


def weight_shapes(include_top=True, classes=1000):
    """[(layer name, [kernel shape, bias shape]), ...] of the 224x224 network, without building it."""
    shapes, channels = [], 3
    for name, filters in zip(CONV_LAYERS, [f for f, convs in BLOCKS for _ in range(convs)]):
        shapes.append((name, [(3, 3, channels, filters), (filters,)]))
        channels = filters
    if include_top:
        for name, (inputs, units) in zip(TOP_LAYERS, [(7 * 7 * 512, 4096), (4096, 4096), (4096, classes)]):
            shapes.append((name, [(inputs, units), (units,)]))
    return shapes


def VGG16(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
          classifier_activation="softmax", name="vgg16"):
    """Keras's VGG16. Without the top, any input of at least 32x32 pixels with 3 channels."""
    input_shape = check_zoo_arguments("VGG16", include_top, weights, input_shape, pooling, classes,
                                      default_size=224, min_size=32)
    with initial_weights(weights):  # zeros, not random draws, when a file fills them in
        inputs = input_tensor if input_tensor is not None else Input(input_shape)
        x = inputs
        for b, (filters, convs) in enumerate(BLOCKS, start=1):
            for c in range(1, convs + 1):
                x = Conv2D(filters, 3, padding="same", activation="relu", name=f"block{b}_conv{c}")(x)
            x = MaxPooling2D((2, 2), strides=(2, 2), name=f"block{b}_pool")(x)
        if include_top:
            x = Flatten(name="flatten")(x)
            x = Dense(4096, activation="relu", name="fc1")(x)
            x = Dense(4096, activation="relu", name="fc2")(x)
            x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    return finish_zoo_model(inputs, x, name, "vgg16", PREPROCESSING, weights, include_top, pooling)


def preprocess_input(x, data_format=None, inplace=False):
    """Keras's 'caffe' preprocessing: RGB->BGR and minus the ImageNet means, no scaling."""
    return _preprocess(x, PREPROCESSING, inplace=inplace)


decode_predictions = imagenet.decode_predictions
