"""ResNet50 (v1, channels last) with keras.applications' arguments, layer names and weight order, so
Keras's published ``resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5`` loads by name. The
stride of a stage's first block sits on its 1x1 convolution (torchvision's v1.5 puts it on the 3x3,
so torchvision's weights belong to a different network)::

    base = ResNet50(include_top=False, weights="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    x = preprocess_input(images)          # 'caffe', as VGG16
"""
from tlkit.engine.layers import (Activation, Add, BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D, Input,
                                 MaxPooling2D, ZeroPadding2D)
from tlkit.zoo import imagenet
from tlkit.zoo.loading import check_zoo_arguments, finish_zoo_model, initial_weights
from tlkit.zoo.preprocessing import preprocess_input as _preprocess

PREPROCESSING = "caffe"
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (filters, blocks, first stride), conv2..conv5
BN_EPSILON = 1.001e-5
TOP_LAYERS = ["predictions"]
TORCHVISION_NAMES = {}
FLATTENED_BEFORE = {}


def weight_shapes(include_top=True, classes=1000):
    """[(layer name, [weight shapes]), ...] in the network's order, without building it."""
    def conv(name, k, cin, cout):
        return [(f"{name}_conv", [(k, k, cin, cout), (cout,)]), (f"{name}_bn", [(cout,)] * 4)]

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


def _conv_bn(x, filters, kernel, name, strides=1, padding="valid", relu=True):
    x = Conv2D(filters, kernel, strides=strides, padding=padding, name=f"{name}_conv")(x)
    x = BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return Activation("relu", name=f"{name}_relu")(x) if relu else x


def _block(x, filters, stride, shortcut_conv, name):
    if shortcut_conv:
        shortcut = _conv_bn(x, 4 * filters, 1, f"{name}_0", strides=stride, relu=False)
    else:
        shortcut = x
    x = _conv_bn(x, filters, 1, f"{name}_1", strides=stride)
    x = _conv_bn(x, filters, 3, f"{name}_2", padding="same")
    x = _conv_bn(x, 4 * filters, 1, f"{name}_3", relu=False)
    x = Add(name=f"{name}_add")([shortcut, x])
    return Activation("relu", name=f"{name}_out")(x)


def ResNet50(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name="resnet50"):
    """keras.applications.ResNet50. ``weights``: None or the path of a weight file (Keras's published
    .h5, or a tlkit file)."""
    input_shape = check_zoo_arguments("ResNet50", include_top, weights, input_shape, pooling, classes,
                                      default_size=224, min_size=32, allow_imagenet=False)
    with initial_weights(weights):
        inputs = input_tensor if input_tensor is not None else Input(input_shape)
        x = ZeroPadding2D(3, name="conv1_pad")(inputs)
        x = _conv_bn(x, 64, 7, "conv1", strides=2)
        x = ZeroPadding2D(1, name="pool1_pad")(x)
        x = MaxPooling2D(3, strides=2, name="pool1_pool")(x)
        for stage, (filters, blocks, stride) in enumerate(STAGES, start=2):
            for b in range(1, blocks + 1):
                x = _block(x, filters, stride if b == 1 else 1, b == 1, f"conv{stage}_block{b}")
        if include_top:
            x = GlobalAveragePooling2D(name="avg_pool")(x)
            x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    return finish_zoo_model(inputs, x, name, "resnet50", PREPROCESSING, weights, include_top, pooling)


def preprocess_input(x, data_format=None, inplace=False):
    """Keras's 'caffe' preprocessing: RGB->BGR and minus the ImageNet means, no scaling."""
    return _preprocess(x, PREPROCESSING, inplace=inplace)


decode_predictions = imagenet.decode_predictions
