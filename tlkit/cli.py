"""The ``tlkit`` command line: finetune, predict, evaluate, summary, convert, augment."""
import importlib
import json
import os
import sys

import click

from tlkit import __version__
from tlkit.apps.models import BASES
from tlkit.apps.distributed_cli import cluster_options, echo_throughput, image_bar, run_on_cluster, wants_cluster
from tlkit.augment.options import augmentation_options


# Mistakes a person can fix: shown as one line, never a traceback (TLKIT_DEBUG=1 shows it).
USER_ERRORS = (ValueError, OSError, RuntimeError)
EXIT_ERROR = 1
PREDICT_PROGRESS_DELAY = 2.0  # seconds: a few pictures finish silently, a large folder shows a bar


class TlkitGroup(click.Group):
    """Every error a person can fix, click's usage errors included, becomes one ``Error: ...`` line
    that says what to do, and exit code 1. ``--help`` and ``--version`` exit 0."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:  # a caller who wants click's exceptions gets them
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:  # --help, --version, ctx.exit(): not errors
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("\nInterrupted.", err=True)
            sys.exit(130)
        except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:  # plain `tlkit`: the help
            click.echo(e.format_message())
            sys.exit(0)
        except click.ClickException as e:
            _fail(_click_message(e))
        except USER_ERRORS as e:
            if os.environ.get("TLKIT_DEBUG"):
                raise
            _fail(str(e))
        sys.exit(0)


def _click_message(e):
    message = e.format_message()
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.UsageError) and ctx is not None:
        message = message.rstrip(".") + f". See '{ctx.command_path} --help'."
    return message


def _fail(message):
    click.echo("Error: " + " ".join(str(message).split()), err=True)  # one line, whatever the message held
    sys.exit(EXIT_ERROR)


@click.group(cls=TlkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tlkit")
def main():
    """tlkit: transfer learning and image augmentation on the CPU."""


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--base", type=click.Choice(list(BASES)), default="vgg16", show_default=True,
              help="The frozen ImageNet base (see `tlkit models`).")
@click.option("--weights", default="imagenet", show_default=True,
              help="'imagenet' (cached or downloaded), a weight file path, or 'none' for random weights.")
@click.option("--image-size", type=click.IntRange(32, 1024), default=224, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 10000), default=10, show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random augmentation of training images (by default horizontal flips only). While it only "
                   "flips, the frozen base's outputs for every flip are computed once and later epochs cost a "
                   "fraction; --rotation/--shift/--zoom/--shear/--brightness make the base run every epoch.")
@augmentation_options(flip_default="horizontal")
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
@click.option("--fine-tune-batchnorm", is_flag=True,
              help="Stage 2: also train the unfrozen BatchNormalization layers (by default they stay frozen, "
                   "in inference mode with their ImageNet statistics).")
@click.option("--fine-tune-epochs", type=click.IntRange(0), default=0, show_default=True)
@click.option("--fine-tune-lr", type=float, default=1e-5, show_default=True)
@click.option("--early-stopping", type=click.IntRange(1), default=None, help="Patience in epochs.")
@click.option("--class-weight", type=click.Choice(["auto"]), default=None, help="auto: balance classes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Compute stage 1's cached base features on this Dask cluster (pip install tlkit[dask]; the "
                   "images and --out on storage the workers can read).")
@click.option("--cluster-workers", type=click.IntRange(1, 256), default=None,
              help="Compute stage 1's cached base features on a local Dask cluster of N worker processes.")
@click.option("--out", "out", default=None, help="Run folder (default: runs/<data folder name>).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@click.option("--verbose", type=click.IntRange(0, 2), default=1, show_default=True,
              help="0: silent, 1: progress bars, 2: one line per epoch (for logs).")
@click.option("--quiet", is_flag=True, help="Same as --verbose 0.")
def finetune(data_dir, quiet, verbose, out, **options):
    """Train a classifier on DATA_DIR (one subfolder per class, or train/ and val/)."""
    from tlkit.apps.finetune import FinetuneConfig, run

    out = out or os.path.join("runs", os.path.basename(os.path.abspath(data_dir)))
    config = FinetuneConfig(data_dir=data_dir, out=out, verbose=0 if quiet else verbose, **options)
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
@cluster_options
def predict(model_path, images, top, fmt, batch_size, scheduler, cluster_workers, parts, resume):
    """Class names and probabilities for each image (files or folders)."""
    from tlkit.apps.inference import load_classifier, predict_files, require_images
    from tlkit.apps.report import one_line
    from tlkit.utils.progbar import Progbar, progress_enabled

    if wants_cluster(scheduler, cluster_workers, parts, resume):
        results, failures, throughput = run_on_cluster(
            scheduler, cluster_workers, parts, lambda dist, client: dist.distributed_predictions(
                client, model_path, images, top, batch_size, parts, resume, bar=image_bar))
        echo_throughput(throughput)
        paths = [p for p, _ in results] + [p for p, _ in failures]
    else:
        model, meta = load_classifier(model_path)
        paths = require_images(images)
        # On stderr, so the table/csv/json on stdout stays clean; shown only when the folder takes a while.
        bar = Progbar(len(paths), verbose=1 if progress_enabled() else 0, unit_name="image", file=sys.stderr,
                      delay=PREDICT_PROGRESS_DELAY)
        results, failures = predict_files(model, meta, paths, top=top, batch_size=batch_size, progress=bar)
    if not results:
        for p, reason in failures:
            click.echo(f"skipped {one_line(p)}: {one_line(reason)}", err=True)
        raise ValueError(f"none of the {len(paths)} file(s) could be read as a picture (see 'skipped' above); "
                         "give JPEG, PNG, BMP, GIF, TIFF or WebP pictures.")
    if fmt == "json":
        click.echo(json.dumps([{"path": p, "predictions": [{"class": c, "probability": pr} for c, pr in ranked]}
                               for p, ranked in results], indent=2))
    elif fmt == "csv":
        click.echo("path,rank,class,probability")
        for p, ranked in results:
            for rank, (c, pr) in enumerate(ranked, 1):
                click.echo(f"{_csv(p)},{rank},{_csv(c)},{pr:.6f}")
    else:
        width = min(60, max(len(one_line(p)) for p, _ in results))
        for p, ranked in results:
            click.echo(f"{one_line(p):<{width}}  " + "  ".join(f"{one_line(c)} {pr:.3f}" for c, pr in ranked))
    for p, reason in failures:
        click.echo(f"skipped {one_line(p)}: {one_line(reason)}", err=True)
    if failures:
        click.echo(f"{len(results)} picture(s) predicted, {len(failures)} skipped.", err=True)


def _csv(text):
    text = str(text)
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\n') else text


@main.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--confusion", "confusion_path", default=None, help="Where to write confusion.png "
              "(default: next to the model).")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@cluster_options
def evaluate(model_path, data_dir, confusion_path, batch_size, scheduler, cluster_workers, parts, resume):
    """Accuracy, per-class report and confusion matrix of MODEL on DATA_DIR/class/* images."""
    from tlkit.apps.inference import evaluate_folder, load_classifier
    from tlkit.apps.plots import plot_confusion, plot_misclassified
    from tlkit.apps.report import format_mistakes, format_report

    if wants_cluster(scheduler, cluster_workers, parts, resume):
        rep = run_on_cluster(scheduler, cluster_workers, parts, lambda dist, client: dist.distributed_evaluation(
            client, model_path, data_dir, batch_size, parts, resume, bar=image_bar))
        echo_throughput(rep["throughput"])
    else:
        model, meta = load_classifier(model_path)
        rep = evaluate_folder(model, meta, data_dir, batch_size=batch_size)
    click.echo(format_report(rep))
    for line in format_mistakes(rep):
        click.echo(line)
    path = confusion_path or os.path.join(os.path.dirname(os.path.abspath(model_path)), "confusion_eval.png")
    plot_confusion(rep["confusion"], rep["classes"], path)
    click.echo(f"\nconfusion matrix picture: {path}")
    if rep["confidently_wrong"]:
        wrong_path = os.path.join(os.path.dirname(os.path.abspath(path)), "misclassified_eval.png")
        plot_misclassified(rep["confidently_wrong"], wrong_path)
        click.echo(f"most confidently wrong images: {wrong_path}")
    if rep["skipped_images"]:
        click.echo(f"{len(rep['skipped_images'])} unreadable image(s) skipped.", err=True)


@main.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--expand-nested", is_flag=True, help="Also list the layers inside nested models (the base).")
def summary(model_path, expand_nested):
    """The model's layer table and how it was trained."""
    from tlkit.apps.inference import load_classifier

    model, meta = load_classifier(model_path)
    model.summary(print_fn=click.echo, expand_nested=expand_nested)
    click.echo("\nMetadata:")
    click.echo(json.dumps(meta, indent=2))


def _register_optional_commands():
    """Commands in their own modules. A third-party package they need may be missing: the command
    then says which one to install. A broken import inside tlkit itself is a bug and is raised."""
    for module, name in (("tlkit.augment.cli", "augment"), ("tlkit.zoo.cli", "convert"), ("tlkit.apps.models", "models"),
                         ("tlkit.apps.distributed_cli", "features")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or e.name.split(".")[0] == "tlkit":
                raise
            main.add_command(_needs_package(name, e.name))
            continue
        main.add_command(getattr(mod, name))


def _needs_package(name, package):
    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   help=f"(unavailable: needs the Python package '{package}')")
    def unavailable():
        raise RuntimeError(f"tlkit {name} needs the Python package '{package}': pip install {package}")

    return unavailable


_register_optional_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
