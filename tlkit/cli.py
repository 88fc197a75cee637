"""The ``tlkit`` command line: finetune, predict, evaluate, summary, convert, augment."""
import json
import os
import sys

import click

from tlkit import __version__


class TlkitGroup(click.Group):
    """Turns the errors a person can fix into a one-line message and exit code 1, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ValueError, FileNotFoundError, FileExistsError, PermissionError, OSError, RuntimeError) as e:
            if os.environ.get("TLKIT_DEBUG"):
                raise
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)


@click.group(cls=TlkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tlkit")
def main():
    """tlkit: transfer learning and image augmentation on the CPU."""


def _pair(value):
    if value is None:
        return None
    parts = [float(v) for v in str(value).split(",")]
    if len(parts) == 1:
        delta = parts[0]
        return (1 - delta, 1 + delta) if delta < 1 else None
    if len(parts) != 2:
        raise click.BadParameter("give LOW,HIGH (e.g. 0.8,1.2) or one spread (0.2 = 0.8,1.2)")
    return tuple(parts)


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--base", type=click.Choice(["vgg16", "squeezenet"]), default="vgg16", show_default=True,
              help="The frozen ImageNet base.")
@click.option("--weights", default="imagenet", show_default=True,
              help="'imagenet' (cached or downloaded), a weight file path, or 'none' for random weights.")
@click.option("--image-size", type=click.IntRange(32, 1024), default=224, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 10000), default=10, show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random augmentation of training images (by default horizontal flips only). While it only "
                   "flips, the frozen base's outputs for every flip are computed once and later epochs cost a "
                   "fraction; --rotation/--shift/--zoom/--shear/--brightness make the base run every epoch.")
@click.option("--rotation", type=click.FloatRange(0, 180), default=0.0, show_default=True, help="Degrees.")
@click.option("--shift", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Fraction of size.")
@click.option("--zoom", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--shear", type=click.FloatRange(0, 90), default=0.0, show_default=True, help="Degrees.")
@click.option("--flip", type=click.Choice(["none", "horizontal", "vertical", "both"]), default="horizontal",
              show_default=True)
@click.option("--brightness", default=None, help="LOW,HIGH factors, e.g. 0.8,1.2.")
@click.option("--fill-mode", type=click.Choice(["nearest", "constant", "reflect", "wrap"]), default="nearest",
              show_default=True)
@click.option("--val-split", type=click.FloatRange(0, 0.9), default=0.2, show_default=True,
              help="Fraction held out for validation when DATA_DIR has no val/ folder.")
@click.option("--head", default="gap,bn,dense:256,dropout:0.5", show_default=True,
              help="Head layers: gap|gmp|flatten|dense:N|dropout:R|bn, comma separated.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd", "rmsprop", "adamw", "adagrad"]), default="adam",
              show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--fine-tune-layers", type=click.IntRange(0), default=0, show_default=True,
              help="Stage 2: unfreeze the last N base layers with weights.")
@click.option("--fine-tune-from", default=None, help="Stage 2: unfreeze the base from this layer on.")
@click.option("--fine-tune-epochs", type=click.IntRange(0), default=0, show_default=True)
@click.option("--fine-tune-lr", type=float, default=1e-5, show_default=True)
@click.option("--early-stopping", type=click.IntRange(1), default=None, help="Patience in epochs.")
@click.option("--class-weight", type=click.Choice(["auto"]), default=None, help="auto: balance classes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--out", "out", default=None, help="Run folder (default: runs/<data folder name>).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@click.option("--verbose", type=click.IntRange(0, 2), default=1, show_default=True,
              help="0: silent, 1: progress bars, 2: one line per epoch (for logs).")
@click.option("--quiet", is_flag=True, help="Same as --verbose 0.")
def finetune(data_dir, quiet, verbose, brightness, flip, out, **options):
    """Train a classifier on DATA_DIR (one subfolder per class, or train/ and val/)."""
    from tlkit.apps.finetune import FinetuneConfig, run

    out = out or os.path.join("runs", os.path.basename(os.path.abspath(data_dir)))
    config = FinetuneConfig(data_dir=data_dir, out=out, brightness=_pair(brightness), flip=flip,
                            verbose=0 if quiet else verbose, **options)
    try:
        run(config)
    except KeyboardInterrupt:
        click.echo(f"\nInterrupted. Completed epochs are saved in {out}; run the same command with --resume "
                   "to continue.", err=True)
        sys.exit(130)


@main.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--top", type=click.IntRange(1), default=1, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
def predict(model_path, images, top, fmt, batch_size):
    """Class names and probabilities for each image (files or folders)."""
    from tlkit.apps.inference import collect_images, load_classifier, predict_files
    from tlkit.apps.report import one_line

    model, meta = load_classifier(model_path)
    paths = collect_images(images)
    if not paths:
        raise ValueError("No images found in the given paths.")
    results, failures = predict_files(model, meta, paths, top=top, batch_size=batch_size)
    if fmt == "json":
        click.echo(json.dumps([{"path": p, "predictions": [{"class": c, "probability": pr} for c, pr in ranked]}
                               for p, ranked in results], indent=2))
    elif fmt == "csv":
        click.echo("path,rank,class,probability")
        for p, ranked in results:
            for rank, (c, pr) in enumerate(ranked, 1):
                click.echo(f"{_csv(p)},{rank},{_csv(c)},{pr:.6f}")
    else:
        width = min(60, max(len(one_line(p)) for p, _ in results)) if results else 10
        for p, ranked in results:
            click.echo(f"{one_line(p):<{width}}  " + "  ".join(f"{one_line(c)} {pr:.3f}" for c, pr in ranked))
    for p, reason in failures:
        click.echo(f"skipped {one_line(p)}: {one_line(reason)}", err=True)


def _csv(text):
    text = str(text)
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\n') else text


@main.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--confusion", "confusion_path", default=None, help="Where to write confusion.png "
              "(default: next to the model).")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
def evaluate(model_path, data_dir, confusion_path, batch_size):
    """Accuracy, per-class report and confusion matrix of MODEL on DATA_DIR/class/* images."""
    from tlkit.apps.inference import evaluate_folder, load_classifier
    from tlkit.apps.plots import plot_confusion
    from tlkit.apps.report import format_report

    model, meta = load_classifier(model_path)
    rep = evaluate_folder(model, meta, data_dir, batch_size=batch_size)
    click.echo(format_report(rep))
    path = confusion_path or os.path.join(os.path.dirname(os.path.abspath(model_path)), "confusion_eval.png")
    import numpy as np
    plot_confusion(np.array(rep["confusion"]), rep["classes"], path)
    click.echo(f"\nconfusion matrix picture: {path}")
    if rep["skipped_images"]:
        click.echo(f"{len(rep['skipped_images'])} unreadable image(s) skipped.", err=True)


@main.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False))
def summary(model_path):
    """The model's layer table and how it was trained."""
    from tlkit.apps.inference import load_classifier

    model, meta = load_classifier(model_path)
    model.summary(print_fn=click.echo)
    click.echo("\nMetadata:")
    click.echo(json.dumps(meta, indent=2))


def _register_optional_commands():
    for module, name in (("tlkit.augment.cli", "augment"), ("tlkit.zoo.cli", "convert")):
        try:
            mod = __import__(module, fromlist=[name])
        except ImportError:
            continue
        main.add_command(getattr(mod, name))


_register_optional_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
