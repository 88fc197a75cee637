"""Argument rules shared by the zoo networks, and putting weight files into them.

Keras files (and tlkit's own) are matched by layer name and weight order. PyTorch and
safetensors files with torchvision's names are converted on the way in: conv kernels
(out, in, kh, kw) -> (kh, kw, in, out), dense (out, in) -> (in, out), fc1's rows from
torchvision's channels-first flatten order to tlkit's channels-last one; and such weights
expect torch preprocessing, which is recorded as ``model.preprocessing``::

    base = VGG16(include_top=False, weights="vgg16-397923af.pth", input_shape=(224, 224, 3))
    base.preprocessing          # "torch"
    x = preprocess_input(images, mode=base.preprocessing)

MobileNetV2 and ResNet50 differ in torchvision (symmetric padding of stride-2 convolutions; ResNet
v1.5's stride on the 3x3 convolution, no conv biases): a torchvision file builds that variant
(``choose_variant``), under the same layer names.
"""
import contextlib
import importlib
import os
from dataclasses import dataclass, field

import numpy as np

from tlkit.engine.layer import skip_initializers
from tlkit.engine.layers import GlobalAveragePooling2D, GlobalMaxPooling2D
from tlkit.engine.model import Model
from tlkit.zoo.weights import VGG16_WEIGHTS, VGG16_WEIGHTS_NOTOP, WeightFile, get_file, read_weight_file

ARCHITECTURES = {"vgg16": "VGG16", "squeezenet": "SqueezeNet", "efficientnet_lite0": "EfficientNetLite0",
                 "mobilenet_v2": "MobileNetV2", "resnet50": "ResNet50"}
# A layer's arrays in a PyTorch state dict, by how many arrays the layer has (BatchNorm: 4).
TORCH_SUFFIXES = {1: ("weight",), 2: ("weight", "bias"), 4: ("weight", "bias", "running_mean", "running_var")}
SQUEEZENET_FILE = "squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5"
# Networks whose torchvision version is another network under the same layer names.
VARIANTS = ("keras", "torchvision")


def check_zoo_arguments(arch, include_top, weights, input_shape, pooling, classes, default_size, min_size,
                        allow_imagenet=True):
    """Keras's rules (imagenet_utils.obtain_input_shape); returns the input shape to build with."""
    if weights == "imagenet" and not allow_imagenet:
        raise ValueError(
            f"{arch} has no official Keras ImageNet weight file to download. Pass the path of a weight file instead, "
            f"e.g. {arch}(weights='path/to/{SQUEEZENET_FILE}'), or a PyTorch/safetensors file "
            "(converted on the fly, or once with `tlkit convert`).")
    if not (weights in (None, "imagenet") or os.path.exists(os.fspath(weights))):
        raise ValueError(
            "The `weights` argument should be either `None` (random initialization), `imagenet` (pre-training on "
            f"ImageNet), or the path to the weights file to be loaded. Received: weights={weights}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError('If using `weights="imagenet"` with `include_top=True`, `classes` should be 1000. '
                         f"Received: classes={classes}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling}")
    default = (default_size, default_size, 3)
    if input_shape is None:
        return default if include_top else (None, None, 3)
    input_shape = tuple(input_shape)
    if include_top and weights is not None and input_shape != default:
        raise ValueError(f"When setting `include_top=True` and loading `imagenet` weights, `input_shape` should be "
                         f"{default}. Received: input_shape={input_shape}")
    if len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be a tuple of three integers (height, width, channels). "
                         f"Received: input_shape={input_shape}")
    if weights is not None and input_shape[-1] != 3:
        raise ValueError(f"The input must have 3 channels to use pretrained weights; Received: "
                         f"input_shape={input_shape}")
    if any(s is not None and s < min_size for s in input_shape[:2]):
        raise ValueError(f"Input size must be at least {min_size}x{min_size}; Received: input_shape={input_shape}")
    return input_shape


def choose_variant(arch, weights, variant):
    """(the variant to build, the weight file read to tell it or None): a weight file's own variant
    (``file_variant``) unless ``variant`` is given, which must then agree with the file."""
    if variant not in (None, *VARIANTS):
        raise ValueError(f"{ARCHITECTURES[arch]}: variant can be one of {VARIANTS} or None (from the weight file), "
                         f"got {variant!r}.")
    if weights in (None, "imagenet"):
        return variant or "keras", None
    weight_file = read_weight_file(os.fspath(weights))
    found = file_variant(weight_file)
    if variant not in (None, found):
        raise ValueError(f"{weight_file.path} holds the {found} {ARCHITECTURES[arch]}, a different network from the "
                         f"{variant} one; pass variant={found!r} or leave variant unset.")
    return found, weight_file


def file_variant(weight_file):
    """"torchvision" for a flat PyTorch/safetensors state dict or a file tlkit converted from one, else "keras"."""
    recorded = (weight_file.metadata or {}).get("variant")
    if recorded in VARIANTS:
        return recorded
    return "keras" if weight_file.layers else "torchvision"


def expected_shapes(module, include_top, classes, variant, alpha=None):
    """``module.weight_shapes`` of the variant (networks without variants have one layout) and, for
    networks with a width multiplier (``module.ALPHAS``), of that alpha."""
    kwargs = {} if variant is None else {"variant": variant}
    if alpha is not None:
        kwargs["alpha"] = alpha
    return module.weight_shapes(include_top, classes=classes, **kwargs)


def file_alpha(weight_file, arch, include_top, classes, variant, first=1.0):
    """The width multiplier of ``module.ALPHAS`` whose layout ``weight_file`` fits (tried: the one the
    file's tlkit metadata records, then ``first``, then the others), or None when none fits."""
    module = architecture_module(arch)
    recorded = (weight_file.metadata or {}).get("alpha")
    order = sorted(module.ALPHAS, key=lambda a: (a != recorded, a != first))
    for alpha in order:
        if match_weights(weight_file, arch, expected_shapes(module, include_top, classes, variant, alpha)).ok:
            return alpha
    return None


def load_zoo_weights(model, arch, weights, include_top):
    """Fill ``model`` (built by ``tlkit.zoo.<arch>``) from "imagenet", a weight file path or a ``WeightFile``."""
    if isinstance(weights, WeightFile):
        weight_file = weights
    else:
        weight_file = read_weight_file(imagenet_weights(arch, include_top) if weights == "imagenet"
                                       else os.fspath(weights))
    expected = [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers if layer.weights]
    match = match_weights(weight_file, arch, expected)
    match.check()
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(match.arrays[layer.name])
    model.preprocessing = match.preprocessing
    return model


def imagenet_weights(arch, include_top):
    """The cached (or freshly downloaded and checked) official Keras file, or an installed package's."""
    if arch == "efficientnet_lite0":
        return architecture_module(arch).imagenet_weights_path()
    if arch != "vgg16":
        raise ValueError(f"{ARCHITECTURES[arch]} has no official Keras ImageNet weight file; pass the path of one, "
                         f"e.g. weights='path/to/{SQUEEZENET_FILE}'")
    return get_file(*(VGG16_WEIGHTS if include_top else VGG16_WEIGHTS_NOTOP))


def architecture_module(arch):
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}.")
    return importlib.import_module(f"tlkit.zoo.{arch}")


@dataclass
class WeightMatch:
    """How a weight file's arrays map onto a network's layers (what ``tlkit convert`` prints)."""

    path: str
    arch: str
    arrays: dict = field(default_factory=dict)        # layer name -> arrays in tlkit's layout
    rows: list = field(default_factory=list)          # (layer, source names, shapes, status)
    missing: list = field(default_factory=list)
    misshapen: list = field(default_factory=list)     # (layer, shapes in the file, shapes expected)
    unused: list = field(default_factory=list)        # file entries no layer took
    preprocessing: str = "caffe"
    source_layout: str = "keras"

    @property
    def ok(self):
        return not (self.missing or self.misshapen)

    def problems(self):
        lines = [f"missing: {name}" for name in self.missing]
        lines += [f"misshapen: {name}: the file has {_shapes(got)}, {ARCHITECTURES[self.arch]} needs {_shapes(want)}"
                  for name, got, want in self.misshapen]
        return lines

    def check(self):
        if self.ok:
            return
        name = ARCHITECTURES[self.arch]
        if not self.arrays and not self.misshapen:
            raise ValueError(
                f"{self.path} is not a {name} weight file: none of {name}'s {len(self.missing)} layers with weights "
                f"is in it (it has {_preview(self.unused)}). It belongs to a different architecture; pass a {name} "
                "file, or check it with `tlkit convert SRC DST --arch ...`.")
        raise ValueError(f"{self.path} does not fit {name}: " + "; ".join(self.problems())
                         + f". {len(self.arrays)} layers matched. Is it a file of another architecture or variant "
                         "(include_top, classes)?")

    def table(self):
        """The matched layers as aligned text lines."""
        header = ("layer", "from", "shapes", "status")
        rows = [header] + [(layer, source, _shapes(shapes), status) for layer, source, shapes, status in self.rows]
        widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
        return ["  ".join(str(cell).ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]


def match_weights(weight_file, arch, expected):
    """Map ``weight_file`` onto ``expected`` = [(layer name, [weight shapes]), ...] of ``arch``."""
    module = architecture_module(arch)
    match = WeightMatch(weight_file.path, arch, preprocessing=module.PREPROCESSING)
    metadata = weight_file.metadata or {}
    if metadata.get("architecture") not in (None, arch):
        raise ValueError(f"{weight_file.path} holds {metadata['architecture']} weights (tlkit metadata), not "
                         f"{ARCHITECTURES[arch]} weights. Pass a {ARCHITECTURES[arch]} file.")
    if weight_file.layers:
        _match_keras(weight_file, expected, match)
        match.preprocessing = metadata.get("preprocessing", module.PREPROCESSING)
    else:
        _match_torchvision(weight_file, module, expected, match)
        match.preprocessing = getattr(module, "TORCH_PREPROCESSING", "torch")
    return match


def _match_keras(weight_file, expected, match):
    used = set()
    for name, shapes in expected:
        arrays = weight_file.layers.get(name)
        if arrays is None:
            match.missing.append(name)
            match.rows.append((name, "-", shapes, "MISSING"))
            continue
        used.add(name)
        _accept(match, name, ", ".join(weight_file.weight_names.get(name, [])), arrays, shapes)
    match.unused = [name for name in weight_file.layers if name not in used]


def _match_torchvision(weight_file, module, expected, match):
    match.source_layout = "torchvision"
    tensors = _strip_prefix(weight_file.tensors, "module.")  # nn.DataParallel checkpoints
    expected_shapes = dict(expected)
    used = set()
    for name, shapes in expected:
        prefix = module.TORCHVISION_NAMES.get(name)
        suffixes = TORCH_SUFFIXES.get(len(shapes), ())
        keys = [f"{prefix}.{suffix}" for suffix in suffixes] if prefix else []
        source = f"{prefix}.{', .'.join(suffixes)}" if prefix else "-"
        if not keys or any(k not in tensors for k in keys):
            match.missing.append(name)
            match.rows.append((name, source, shapes, "MISSING"))
            continue
        used.update(keys)
        weight, *rest = (tensors[k] for k in keys)
        note = "rows reordered CHW->HWC" if name in module.FLATTENED_BEFORE else ""
        if weight.ndim == 4:
            kernel = _torch_conv_kernel(weight, shapes[0])
        elif weight.ndim == 2 and name in module.FLATTENED_BEFORE:
            channels = expected_shapes[module.FLATTENED_BEFORE[name]][-1][0]
            kernel = _chw_rows_to_hwc(weight, channels)
        elif weight.ndim == 2:  # dense: (out, in) -> (in, out)
            kernel = weight.T
        else:
            kernel = weight
        _accept(match, name, source, [np.ascontiguousarray(kernel), *rest], shapes, note)
    # BatchNorm's step counter is no weight: not worth reporting as unused.
    match.unused = [key for key in tensors if key not in used and not key.endswith(".num_batches_tracked")]


def _torch_conv_kernel(weight, expected):
    """torch (out, in / groups, kh, kw) -> Keras's (kh, kw, in, out), or for a depthwise convolution
    (groups = in: weight (in * M, 1, kh, kw)) -> (kh, kw, in, M)."""
    out, per_group, kh, kw = weight.shape
    if per_group == 1 and len(expected) == 4 and expected[2] > 1 and expected[2] * expected[3] == out:
        return weight.reshape(expected[2], expected[3], kh, kw).transpose(2, 3, 0, 1)
    return weight.transpose(2, 3, 1, 0)


def _chw_rows_to_hwc(weight, channels):
    """torch (out, C*H*W) with columns in (c, h, w) order -> (H*W*C, out) with rows in (h, w, c) order."""
    out, inputs = weight.shape
    if channels <= 0 or inputs % channels:
        return weight.T  # the shape check reports the mismatch
    return weight.reshape(out, channels, inputs // channels).transpose(2, 1, 0).reshape(inputs, out)


def _accept(match, name, source, arrays, shapes, note=""):
    got = [tuple(a.shape) for a in arrays]
    if got != [tuple(s) for s in shapes]:
        match.misshapen.append((name, got, shapes))
        match.rows.append((name, source, got, f"MISSHAPEN (needs {_shapes(shapes)})"))
        return
    match.arrays[name] = [np.asarray(a, np.float32) for a in arrays]
    match.rows.append((name, source, shapes, "ok" + (f" ({note})" if note else "")))


def _strip_prefix(tensors, prefix):
    if tensors and all(k.startswith(prefix) for k in tensors):
        return {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def _shapes(shapes):
    return " ".join(str(tuple(int(d) for d in s)).replace(" ", "") for s in shapes)


def _preview(names, count=6):
    names = list(names)
    if not names:
        return "no arrays"
    return ", ".join(names[:count]) + (f", ... ({len(names)} in all)" if len(names) > count else "")


def initial_weights(weights):
    """Context for building a zoo network: skip the random initial values when a weight file will
    replace them (VGG16 has 138M of them: seconds of work thrown away)."""
    return skip_initializers() if weights is not None else contextlib.nullcontext()


def finish_zoo_model(inputs, x, name, arch, preprocessing, weights, include_top, pooling):
    """Keras's common ending of an application: optional global pooling without the top, the
    Model, its preprocessing mode, and the weights."""
    if not include_top and pooling == "avg":
        x = GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    elif not include_top and pooling == "max":
        x = GlobalMaxPooling2D(name="global_max_pooling2d")(x)
    model = Model(inputs, x, name=name)
    model.preprocessing = preprocessing
    if weights is not None:
        load_zoo_weights(model, arch, weights, include_top)
    return model
