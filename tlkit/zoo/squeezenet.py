"""SqueezeNet v1.1 (channels last) with the layer names of the keras-squeezenet weights.

A fire module squeezes with a 1x1 conv, then expands in parallel with a 1x1 and a 3x3 conv
whose outputs are concatenated (1x1 first). 722k parameters: a ~40x cheaper base than VGG16.
"""
from tlkit.engine.layers import Activation, Concatenate, Conv2D, Dropout, GlobalAveragePooling2D, Input, MaxPooling2D
from tlkit.zoo.loading import check_zoo_arguments, finish_zoo_model, initial_weights
from tlkit.zoo.preprocessing import preprocess_input as _preprocess

PREPROCESSING = "caffe"
FIRES = ((2, 16, 64), (3, 16, 64), "pool3", (4, 32, 128), (5, 32, 128), "pool5",
         (6, 48, 192), (7, 48, 192), (8, 64, 256), (9, 64, 256))
TOP_LAYERS = ["conv10"]
# torchvision's squeezenet1_1: features.0 is conv1; fire2..fire9 are features.3, 4, 6, 7, 9, 10, 11, 12
# (the others are relu and pool modules); classifier.1 is conv10.
_FIRE_MODULES = {2: 3, 3: 4, 4: 6, 5: 7, 6: 9, 7: 10, 8: 11, 9: 12}
TORCHVISION_NAMES = {"conv1": "features.0", "conv10": "classifier.1"}
TORCHVISION_NAMES.update({f"fire{fire}/{ours}": f"features.{module}.{theirs}" for fire, module in _FIRE_MODULES.items()
                          for ours, theirs in (("squeeze1x1", "squeeze"), ("expand1x1", "expand1x1"),
                                               ("expand3x3", "expand3x3"))})
FLATTENED_BEFORE = {}


def weight_shapes(include_top=False, classes=1000):
    """[(layer name, [kernel shape, bias shape]), ...], without building the network."""
    shapes = [("conv1", [(3, 3, 3, 64), (64,)])]
    channels = 64
    for spec in FIRES:
        if isinstance(spec, str):
            continue
        index, squeeze, expand = spec
        shapes += [(f"fire{index}/squeeze1x1", [(1, 1, channels, squeeze), (squeeze,)]),
                   (f"fire{index}/expand1x1", [(1, 1, squeeze, expand), (expand,)]),
                   (f"fire{index}/expand3x3", [(3, 3, squeeze, expand), (expand,)])]
        channels = 2 * expand
    if include_top:
        shapes.append(("conv10", [(1, 1, channels, classes), (classes,)]))
    return shapes


def fire_module(x, index, squeeze, expand):
    name = f"fire{index}"
    x = Conv2D(squeeze, 1, activation="relu", name=f"{name}/squeeze1x1")(x)
    left = Conv2D(expand, 1, activation="relu", name=f"{name}/expand1x1")(x)
    right = Conv2D(expand, 3, padding="same", activation="relu", name=f"{name}/expand3x3")(x)
    return Concatenate(name=f"{name}/concat")([left, right])


def SqueezeNet(include_top=False, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
               classifier_activation="softmax", name="squeezenet"):
    """SqueezeNet v1.1. ``weights``: None or a weight file path (the keras-squeezenet .h5, or a
    tlkit/PyTorch/safetensors file converted with ``tlkit convert``)."""
    input_shape = check_zoo_arguments("SqueezeNet", include_top, weights, input_shape, pooling, classes,
                                      default_size=227, min_size=32, allow_imagenet=False)
    with initial_weights(weights):  # zeros, not random draws, when a file fills them in
        inputs = input_tensor if input_tensor is not None else Input(input_shape)
        x = Conv2D(64, 3, strides=2, activation="relu", name="conv1")(inputs)
        x = MaxPooling2D(3, strides=2, name="pool1")(x)
        for spec in FIRES:
            if isinstance(spec, str):
                x = MaxPooling2D(3, strides=2, name=spec)(x)
            else:
                x = fire_module(x, *spec)
        if include_top:
            x = Dropout(0.5, name="drop9")(x)
            x = Conv2D(classes, 1, activation="relu", name="conv10")(x)
            x = GlobalAveragePooling2D(name="avgpool10")(x)
            x = Activation(classifier_activation, name="loss")(x)
    return finish_zoo_model(inputs, x, name, "squeezenet", PREPROCESSING, weights, include_top, pooling)


def preprocess_input(x, data_format=None, inplace=False):
    """'caffe' preprocessing, as the keras-squeezenet weights expect."""
    return _preprocess(x, PREPROCESSING, inplace=inplace)
