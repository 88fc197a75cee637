"""ResNet50 (v1, channels last) with keras.applications' arguments, layer names and weight order, so
Keras's published ``resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5`` loads by name. The
stride of a stage's first block sits on its 1x1 convolution::

    base = ResNet50(include_top=False, weights="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    x = preprocess_input(images)          # 'caffe', as VGG16

torchvision's resnet50 is v1.5: the stride sits on the 3x3 convolution, padded one pixel on every
side, its convolutions have no bias and its BatchNorm epsilon is 1e-5. Its state dict (``conv1``,
``layer1.0.conv1``, ``fc``...) builds that variant, under Keras's layer names, with torch
preprocessing::

    base = ResNet50(include_top=False, weights="resnet50-11ad3fa6.pth")    # variant="torchvision"
    x = preprocess_input(images, mode=base.preprocessing)                 # tlkit.zoo.preprocessing
"""
from tlkit.engine.layers import (Activation, Add, BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D, Input,
                                 MaxPooling2D, ZeroPadding2D)
from tlkit.zoo import imagenet
from tlkit.zoo.loading import check_zoo_arguments, choose_variant, finish_zoo_model, initial_weights
from tlkit.zoo.preprocessing import preprocess_input as _preprocess

PREPROCESSING = "caffe"
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (filters, blocks, first stride), conv2..conv5
BN_EPSILON = {"keras": 1.001e-5, "torchvision": 1e-5}
VARIANT_PREPROCESSING = {"keras": PREPROCESSING, "torchvision": "torch"}
TOP_LAYERS = ["predictions"]
FLATTENED_BEFORE = {}


def _torchvision_names():
    """Keras layer name -> torchvision module: conv1/bn1, layerS.B.convN/bnN, layerS.0.downsample.0/1, fc."""
    names = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc"}
    for stage, (_, blocks, _) in enumerate(STAGES, start=2):
        for b in range(1, blocks + 1):
            ours, theirs = f"conv{stage}_block{b}", f"layer{stage - 1}.{b - 1}"
            for n in (1, 2, 3):
                names.update({f"{ours}_{n}_conv": f"{theirs}.conv{n}", f"{ours}_{n}_bn": f"{theirs}.bn{n}"})
            if b == 1:
                names.update({f"{ours}_0_conv": f"{theirs}.downsample.0", f"{ours}_0_bn": f"{theirs}.downsample.1"})
    return names


TORCHVISION_NAMES = _torchvision_names()


def weight_shapes(include_top=True, classes=1000, variant="keras"):
    """[(layer name, [weight shapes]), ...] in the network's order, without building it (torchvision's
    convolutions have no bias)."""
    def conv(name, k, cin, cout):
        kernel = [(k, k, cin, cout)] + ([(cout,)] if variant == "keras" else [])
        return [(f"{name}_conv", kernel), (f"{name}_bn", [(cout,)] * 4)]

    shapes, channels = conv("conv1", 7, 3, 64), 64
    for stage, (filters, blocks, _) in enumerate(STAGES, start=2):
        for b in range(1, blocks + 1):
            name = f"conv{stage}_block{b}"
            if b == 1:
                shapes += conv(f"{name}_0", 1, channels, 4 * filters)
            shapes += conv(f"{name}_1", 1, channels, filters) + conv(f"{name}_2", 3, filters, filters)
            shapes += conv(f"{name}_3", 1, filters, 4 * filters)
            channels = 4 * filters
    if include_top:
        shapes.append(("predictions", [(channels, classes), (classes,)]))
    return shapes


def weight_names(layer, count):
    return ["gamma", "beta", "moving_mean", "moving_variance"] if count == 4 else ["kernel", "bias"][:count]


def _conv_bn(x, filters, kernel, name, variant, strides=1, padding="valid", relu=True):
    x = Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=variant == "keras", name=f"{name}_conv")(x)
    x = BatchNormalization(epsilon=BN_EPSILON[variant], name=f"{name}_bn")(x)
    return Activation("relu", name=f"{name}_relu")(x) if relu else x


def _block(x, filters, stride, shortcut_conv, name, variant):
    if shortcut_conv:
        shortcut = _conv_bn(x, 4 * filters, 1, f"{name}_0", variant, strides=stride, relu=False)
    else:
        shortcut = x
    if variant == "keras":  # v1: the stride on the first 1x1
        x = _conv_bn(x, filters, 1, f"{name}_1", variant, strides=stride)
        x = _conv_bn(x, filters, 3, f"{name}_2", variant, padding="same")
    else:  # v1.5: on the 3x3, one pixel of zeros on every side
        x = _conv_bn(x, filters, 1, f"{name}_1", variant)
        if stride == 1:
            x = _conv_bn(x, filters, 3, f"{name}_2", variant, padding="same")
        else:
            x = _conv_bn(ZeroPadding2D(1, name=f"{name}_2_pad")(x), filters, 3, f"{name}_2", variant, strides=stride)
    x = _conv_bn(x, 4 * filters, 1, f"{name}_3", variant, relu=False)
    x = Add(name=f"{name}_add")([shortcut, x])
    return Activation("relu", name=f"{name}_out")(x)


def ResNet50(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name="resnet50", variant=None):
    """keras.applications.ResNet50. ``weights``: None or the path of a weight file (Keras's published
    .h5, torchvision's state dict, or a tlkit file). ``variant``: "keras" (v1) or "torchvision" (v1.5)
    (default: the weight file's, else "keras")."""
    input_shape = check_zoo_arguments("ResNet50", include_top, weights, input_shape, pooling, classes,
                                      default_size=224, min_size=32, allow_imagenet=False)
    variant, weight_file = choose_variant("resnet50", weights, variant)
    with initial_weights(weights):
        inputs = input_tensor if input_tensor is not None else Input(input_shape)
        x = ZeroPadding2D(3, name="conv1_pad")(inputs)
        x = _conv_bn(x, 64, 7, "conv1", variant, strides=2)
        x = ZeroPadding2D(1, name="pool1_pad")(x)
        x = MaxPooling2D(3, strides=2, name="pool1_pool")(x)
        for stage, (filters, blocks, stride) in enumerate(STAGES, start=2):
            for b in range(1, blocks + 1):
                x = _block(x, filters, stride if b == 1 else 1, b == 1, f"conv{stage}_block{b}", variant)
        if include_top:
            x = GlobalAveragePooling2D(name="avg_pool")(x)
            x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    return finish_zoo_model(inputs, x, name, "resnet50", VARIANT_PREPROCESSING[variant], weight_file or weights,
                            include_top, pooling)


def preprocess_input(x, data_format=None, inplace=False):
    """Keras's 'caffe' preprocessing: RGB->BGR and minus the ImageNet means, no scaling."""
    return _preprocess(x, PREPROCESSING, inplace=inplace)


decode_predictions = imagenet.decode_predictions
