"""``tlkit convert SRC DST``: any supported weight file -> tlkit's own weight file, checked first.

    tlkit convert vgg16-397923af.pth vgg16_torch.h5 --arch vgg16
    tlkit convert squeezenet1_1.safetensors sq.h5 --no-top

Every layer the network needs must be present with the right shape, or nothing is written.
The output is a Keras 2 layout HDF5 file (Keras reads it too) whose ``tlkit_metadata`` records
the architecture, the preprocessing the weights expect, the source file name and sha256.
"""
import hashlib
import os

import click

from tlkit.zoo.loading import (ARCHITECTURES, architecture_module, expected_shapes, file_alpha, file_variant,
                               match_weights)
from tlkit.zoo.weights import read_weight_file, sniff_format, write_keras_h5

SOURCE_FORMATS = {"keras": ("keras_h5", "keras_archive"), "torch": ("torch",), "safetensors": ("safetensors",)}


@click.command("convert")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--arch", type=click.Choice(list(ARCHITECTURES)), default=None,
              help="The network the weights are for (default: recognised from the names in SRC).")
@click.option("--from", "source_format", type=click.Choice(["auto", *SOURCE_FORMATS]), default="auto",
              show_default=True, help="SRC's format (default: recognised from its content).")
@click.option("--include-top/--no-top", default=None,
              help="Keep the classifier layers (default: keep them when SRC has them).")
def convert(src, dst, arch, source_format, include_top):
    """Check SRC against the network and write it as tlkit's weight file DST."""
    weight_file = read_weight_file(src, format=_reader_format(src, source_format))
    arch = arch or guess_architecture(weight_file)
    module = architecture_module(arch)
    if include_top is None:
        include_top = _has_top(weight_file, module)
    # MobileNetV2 and ResNet50 from torchvision are other networks under the same names: the file tells which.
    variant = file_variant(weight_file) if hasattr(module, "VARIANT_PREPROCESSING") else None
    classes = _classes(weight_file, module) if include_top else 1000
    # A network with a width multiplier (MobileNetV2's alpha): the one whose shapes the file has.
    alpha = None
    if hasattr(module, "ALPHAS"):
        alpha = file_alpha(weight_file, arch, include_top, classes, variant) or 1.0
    expected = expected_shapes(module, include_top, classes, variant, alpha)
    match = match_weights(weight_file, arch, expected)
    click.echo(f"{src}: {weight_file.format} file, {match.source_layout} names -> {ARCHITECTURES[arch]} "
               f"({'with' if include_top else 'without'} top{f', {variant} variant' if variant else ''}"
               f"{f', alpha {alpha}' if alpha is not None else ''})")
    for line in match.table():
        click.echo(line)
    if not match.ok:
        for line in match.problems():
            click.echo(line, err=True)
        raise click.ClickException(f"{src} does not fit {ARCHITECTURES[arch]}; nothing was written.")
    if match.unused:
        click.echo(f"not used: {', '.join(match.unused[:8])}" + (" ..." if len(match.unused) > 8 else ""))
    metadata = {"architecture": arch, "preprocessing": match.preprocessing, "include_top": include_top,
                "source_file": os.path.basename(src), "source_sha256": file_sha256(src),
                "source_format": weight_file.format}
    if variant:
        metadata["variant"] = variant
    if alpha is not None:
        metadata["alpha"] = alpha
    layers = [(name, [(f"{name}/{weight}:0", array) for weight, array in
                      zip(weight_names(module, name, len(match.arrays[name])), match.arrays[name])])
              for name, _ in expected]
    write_keras_h5(dst, layers, metadata)
    click.echo(f"wrote {dst}: {len(layers)} layers, preprocessing '{match.preprocessing}'. "
               f"Load it with {ARCHITECTURES[arch]}({f'alpha={alpha}, ' if alpha is not None else ''}"
               f"include_top={include_top}, weights={dst!r})"
               + (f" (it builds the {variant} variant)." if variant else "."))


def weight_names(module, layer, count):
    """Keras's names of a layer's arrays: the module says when they are not kernel (and bias)."""
    names = getattr(module, "weight_names", None)
    return names(layer, count) if names else ["kernel", "bias"][:count]


def _reader_format(src, source_format):
    if source_format == "auto":
        return "auto"
    found = sniff_format(src)
    if found not in SOURCE_FORMATS[source_format]:
        raise click.ClickException(f"{src} is a {found} file, not {source_format}; use --from auto.")
    return found


def guess_architecture(weight_file):
    """The architecture whose layer names (Keras or torchvision) the file holds most of."""
    recorded = (weight_file.metadata or {}).get("architecture")
    if recorded in ARCHITECTURES:
        return recorded
    counts = {}
    for arch in ARCHITECTURES:
        module = architecture_module(arch)
        if weight_file.layers:
            counts[arch] = sum(name in weight_file.layers for name in module.TORCHVISION_NAMES)
        else:
            names = {key.removeprefix("module.") for key in weight_file.tensors}
            counts[arch] = sum(f"{prefix}.weight" in names for prefix in module.TORCHVISION_NAMES.values())
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        raise click.ClickException(f"{weight_file.path} has none of the layer names of {', '.join(ARCHITECTURES)}; "
                                   "if it is one of them under other names, it cannot be converted.")
    return best


def _has_top(weight_file, module):
    if weight_file.layers:
        return any(name in weight_file.layers for name in module.TOP_LAYERS)
    names = {key.removeprefix("module.") for key in weight_file.tensors}
    return any(f"{module.TORCHVISION_NAMES[name]}.weight" in names for name in module.TOP_LAYERS)


def _classes(weight_file, module):
    """The class count of the file's last layer (its bias length), 1000 if it cannot be told."""
    last = module.TOP_LAYERS[-1]
    if weight_file.layers:
        arrays = weight_file.layers.get(last, [])
        bias = arrays[1] if len(arrays) == 2 else None
    else:
        tensors = {key.removeprefix("module."): value for key, value in weight_file.tensors.items()}
        bias = tensors.get(f"{module.TORCHVISION_NAMES[last]}.bias")
    return int(bias.shape[0]) if bias is not None and bias.ndim == 1 else 1000


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
