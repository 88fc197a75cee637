"""MobileNetV2 (channels last) with keras.applications' arguments, layer names and weight order, so
Keras's published files (``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}[_no_top].h5``)
load by name::

    base = MobileNetV2(alpha=0.35, include_top=False, weights="mobilenet_v2_..._0.35_224_no_top.h5")
    x = preprocess_input(images)          # x / 127.5 - 1 ('tf')

torchvision's mobilenet_v2 is the same network but for its padding: stride-2 convolutions pad one
pixel on every side (Keras pads TF 'same': right and bottom only on even sizes), its BatchNorm
epsilon is 1e-5 and dropout comes before the classifier. Its state dict (``features.N...``) builds
that variant, under Keras's layer names, with torch preprocessing::

    base = MobileNetV2(include_top=False, weights="mobilenet_v2-b0353104.pth")   # variant="torchvision"
    x = preprocess_input(images, mode=base.preprocessing)                      # tlkit.zoo.preprocessing
"""
from tlkit.engine.layers import (Add, BatchNormalization, Conv2D, Dense, DepthwiseConv2D, Dropout,
                                 GlobalAveragePooling2D, Input, ReLU, ZeroPadding2D)
from tlkit.zoo import imagenet
from tlkit.zoo.loading import check_zoo_arguments, choose_variant, file_alpha, finish_zoo_model, initial_weights
from tlkit.zoo.preprocessing import preprocess_input as _preprocess

PREPROCESSING = "tf"
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
# (filters, stride, expansion) of blocks 0..16, as in the paper and keras.applications.
BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6), (64, 1, 6),
          (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6),
          (320, 1, 6))
TOP_LAYERS = ["predictions"]
FLATTENED_BEFORE = {}
# BatchNormalization per variant: Keras's, and torch's defaults (eps 1e-5, momentum 0.1 = Keras's 0.9).
BN = {"keras": {"epsilon": 1e-3, "momentum": 0.999}, "torchvision": {"epsilon": 1e-5, "momentum": 0.9}}
VARIANT_PREPROCESSING = {"keras": PREPROCESSING, "torchvision": "torch"}
TORCHVISION_DROPOUT = 0.2


def _torchvision_names():
    """Keras layer name -> torchvision module: features.0 (stem), features.1..17 (blocks: conv.N),
    features.18 (last 1x1), classifier.1."""
    names = {"Conv1": "features.0.0", "bn_Conv1": "features.0.1", "expanded_conv_depthwise": "features.1.conv.0.0",
             "expanded_conv_depthwise_BN": "features.1.conv.0.1", "expanded_conv_project": "features.1.conv.1",
             "expanded_conv_project_BN": "features.1.conv.2", "Conv_1": "features.18.0", "Conv_1_bn": "features.18.1",
             "predictions": "classifier.1"}
    for block_id in range(1, len(BLOCKS)):
        module = f"features.{block_id + 1}.conv"
        for ours, theirs in (("expand", "0.0"), ("expand_BN", "0.1"), ("depthwise", "1.0"), ("depthwise_BN", "1.1"),
                             ("project", "2"), ("project_BN", "3")):
            names[f"block_{block_id}_{ours}"] = f"{module}.{theirs}"
    return names


TORCHVISION_NAMES = _torchvision_names()


def make_divisible(value, divisor=8):
    """The channel count nearest ``value`` that ``divisor`` divides, never more than 10% below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _layout(alpha, classes, include_top):
    """[(layer name, kind, weight shapes)] in network order; kind: conv, bn, dw, dense."""
    out, channels = [], make_divisible(32 * alpha)
    out += [("Conv1", [(3, 3, 3, channels)]), ("bn_Conv1", [(channels,)] * 4)]
    for block_id, (filters, _, expansion) in enumerate(BLOCKS):
        prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
        wide, project = channels * expansion, make_divisible(int(filters * alpha))
        if block_id:
            out += [(prefix + "expand", [(1, 1, channels, wide)]), (prefix + "expand_BN", [(wide,)] * 4)]
        out += [(prefix + "depthwise", [(3, 3, wide, 1)]), (prefix + "depthwise_BN", [(wide,)] * 4),
                (prefix + "project", [(1, 1, wide, project)]), (prefix + "project_BN", [(project,)] * 4)]
        channels = project
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    out += [("Conv_1", [(1, 1, channels, last)]), ("Conv_1_bn", [(last,)] * 4)]
    if include_top:
        out.append(("predictions", [(last, classes), (classes,)]))
    return out


def weight_shapes(include_top=True, classes=1000, alpha=1.0, variant="keras"):
    """[(layer name, [weight shapes]), ...] in the network's order, without building it (both variants
    have the same shapes)."""
    return _layout(alpha, classes, include_top)


def weight_names(layer, count):
    if count == 4:
        return ["gamma", "beta", "moving_mean", "moving_variance"]
    return ["depthwise_kernel"] if layer.endswith("depthwise") else ["kernel", "bias"][:count]


def _bn_relu(x, variant, name, relu_name=None):
    x = BatchNormalization(name=name, **BN[variant])(x)
    return ReLU(6.0, name=relu_name)(x) if relu_name else x


def _pad_for_stride_2(x, variant, name):
    """The zeros before a 3x3 stride-2 window: keras.applications' correct_pad (TF's 'same') or
    torchvision's one pixel on every side."""
    if variant == "torchvision":
        return ZeroPadding2D(1, name=name)(x)
    h, w = x.shape[1:3]
    adjust = (1, 1) if h is None else (1 - h % 2, 1 - w % 2)
    return ZeroPadding2D(((1 - adjust[0], 1), (1 - adjust[1], 1)), name=name)(x)


def MobileNetV2(input_shape=None, alpha=1.0, include_top=True, weights="imagenet", input_tensor=None, pooling=None,
                classes=1000, classifier_activation="softmax", name=None, variant=None):
    """keras.applications.MobileNetV2. ``weights``: None or the path of a weight file (Keras's
    published .h5 for this alpha, torchvision's state dict, or a tlkit file); inputs:
    ``preprocess_input(x, mode=model.preprocessing)`` of RGB in [0, 255]. ``variant``: "keras" or
    "torchvision" (default: the weight file's, else "keras")."""
    if alpha not in ALPHAS:
        raise ValueError(f"MobileNetV2: alpha can be one of {ALPHAS}, got {alpha!r}.")
    input_shape = check_zoo_arguments("MobileNetV2", include_top, weights, input_shape, pooling, classes,
                                      default_size=224, min_size=32, allow_imagenet=False)
    variant, weight_file = choose_variant("mobilenet_v2", weights, variant)
    with initial_weights(weights):
        inputs = input_tensor if input_tensor is not None else Input(input_shape)
        channels = make_divisible(32 * alpha)
        if variant == "torchvision":
            x = Conv2D(channels, 3, strides=2, use_bias=False, name="Conv1")(_pad_for_stride_2(inputs, variant,
                                                                                                "Conv1_pad"))
        else:
            x = Conv2D(channels, 3, strides=2, padding="same", use_bias=False, name="Conv1")(inputs)
        x = _bn_relu(x, variant, "bn_Conv1", "Conv1_relu")
        for block_id, (filters, stride, expansion) in enumerate(BLOCKS):
            prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
            shortcut, project = x, make_divisible(int(filters * alpha))
            if block_id:
                x = Conv2D(channels * expansion, 1, padding="same", use_bias=False, name=prefix + "expand")(x)
                x = _bn_relu(x, variant, prefix + "expand_BN", prefix + "expand_relu")
            if stride == 2:
                x = _pad_for_stride_2(x, variant, prefix + "pad")
            x = DepthwiseConv2D(3, strides=stride, use_bias=False, padding="same" if stride == 1 else "valid",
                                name=prefix + "depthwise")(x)
            x = _bn_relu(x, variant, prefix + "depthwise_BN", prefix + "depthwise_relu")
            x = Conv2D(project, 1, padding="same", use_bias=False, name=prefix + "project")(x)
            x = _bn_relu(x, variant, prefix + "project_BN")
            if channels == project and stride == 1:
                x = Add(name=prefix + "add")([shortcut, x])
            channels = project
        last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
        x = Conv2D(last, 1, use_bias=False, name="Conv_1")(x)
        x = _bn_relu(x, variant, "Conv_1_bn", "out_relu")
        if include_top:
            x = GlobalAveragePooling2D()(x)
            if variant == "torchvision":
                x = Dropout(TORCHVISION_DROPOUT, name="top_dropout")(x)
            x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    name = name or f"mobilenetv2_{alpha:0.2f}_{input_shape[0]}"
    try:
        return finish_zoo_model(inputs, x, name, "mobilenet_v2", VARIANT_PREPROCESSING[variant],
                                weight_file or weights, include_top, pooling)
    except ValueError:
        # a file of another width fails by shapes: say which alpha it holds instead (only then searched)
        found = None if weight_file is None else file_alpha(weight_file, "mobilenet_v2", include_top, classes,
                                                            variant, first=alpha)
        if found not in (None, alpha):
            raise ValueError(f"{weight_file.path} holds MobileNetV2 weights of alpha {found}, not {alpha}: "
                             f"pass alpha={found}.") from None
        raise


def preprocess_input(x, data_format=None, inplace=False):
    """Keras's 'tf' preprocessing: x / 127.5 - 1."""
    return _preprocess(x, PREPROCESSING, inplace=inplace)


decode_predictions = imagenet.decode_predictions
