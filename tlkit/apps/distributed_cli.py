"""``tlkit features`` and the options that send predict / evaluate / features to a Dask cluster.

    tlkit features PHOTOS --base squeezenet --weights squeezenet.h5 --out features.h5
    tlkit features PHOTOS --base squeezenet --weights squeezenet.h5 --out features.h5 --workers 2
    tlkit predict model.h5 PHOTOS --scheduler tcp://scheduler:8786 --format csv

Without --scheduler or --workers everything runs in this process and dask is never imported.
"""
import contextlib
import os
import sys

import click

from tlkit.apps.feature_file import POOLINGS


def cluster_options(command):
    """--scheduler / --workers / --parts / --resume, for a command that can run on a cluster."""
    for option in reversed([
        click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
                     help="Run on this Dask cluster (needs pip install tlkit[dask]; images on storage the workers "
                          "can read)."),
        click.option("--workers", "cluster_workers", type=click.IntRange(1, 256), default=None,
                     help="Run on a local Dask cluster of N worker processes sharing the cores."),
        click.option("--parts", default=None, metavar="FOLDER",
                     help="With --scheduler/--workers: where finished partitions are kept until the output is "
                          "written (needed for --resume)."),
        click.option("--resume", is_flag=True,
                     help="With --scheduler/--workers: compute only the partitions not already in --parts."),
    ]):
        command = option(command)
    return command


def wants_cluster(scheduler, cluster_workers, parts=None, resume=False):
    """Whether the command runs on a cluster; --parts and --resume alone are a mistake, said so."""
    if scheduler or cluster_workers:
        return True
    if parts or resume:
        raise click.UsageError("--parts and --resume go with --scheduler or --workers")
    return False


@contextlib.contextmanager
def cluster_client(scheduler, cluster_workers):
    try:
        from tlkit.distributed import connect
    except ModuleNotFoundError as e:
        raise RuntimeError(f"--scheduler/--workers need dask, which is not installed: pip install tlkit[dask] "
                           f"({e.name} missing).") from None
    with connect(scheduler=scheduler, workers=cluster_workers) as client:
        yield client


def image_bar(count):
    from tlkit.utils.progbar import Progbar, progress_enabled

    return Progbar(count, verbose=1 if progress_enabled() else 0, unit_name="image", file=sys.stderr)


def echo_throughput(rows):
    from tlkit.distributed import format_throughput

    for line in format_throughput(rows):
        click.echo(line, err=True)


def run_on_cluster(scheduler, cluster_workers, parts, job):
    """``job(tlkit.distributed, client)`` on the cluster; Ctrl-C says where the finished partitions are."""
    try:
        with cluster_client(scheduler, cluster_workers) as client:
            import tlkit.distributed

            return job(tlkit.distributed, client)
    except KeyboardInterrupt:
        kept = f"Finished partitions are kept in {parts}; run the same command with --resume" if parts else \
            "Give --parts FOLDER to keep finished partitions and continue later with --resume"
        click.echo(f"\nInterrupted. {kept}.", err=True)
        sys.exit(130)


@click.command("features")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--base", "model", required=True,
              help="A base (see `tlkit models`) or a tlkit model file.")
@click.option("--weights", default="imagenet", show_default=True,
              help="For a base: 'imagenet', a weight file path, or 'none'.")
@click.option("--image-size", type=click.IntRange(32, 1024), default=224, show_default=True,
              help="For a base: the size images are resized to (a model file knows its own).")
@click.option("--pooling", type=click.Choice(POOLINGS), default="avg", show_default=True,
              help="Global pooling of feature maps: one vector per image (none keeps the maps).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--out", required=True, help="The HDF5 feature file to write (e.g. features.h5).")
@cluster_options
def features(images, model, weights, image_size, pooling, batch_size, out, scheduler, cluster_workers, parts, resume):
    """The model's outputs for every image (files or folders) in one HDF5 feature file."""
    from tlkit.apps.feature_file import extract_features, load_feature_model, model_spec, write_feature_file
    from tlkit.apps.inference import require_images
    from tlkit.apps.report import one_line

    if wants_cluster(scheduler, cluster_workers, parts, resume):
        parts = parts or os.fspath(out) + ".parts"
        done = run_on_cluster(scheduler, cluster_workers, parts, lambda dist, client: dist.distributed_features(
            client, images, model, weights, image_size, out, pooling, batch_size, parts, resume, bar=image_bar))
        echo_throughput(done["throughput"])
        count, failures = done["images"], done["skipped"]
    else:
        paths = require_images(images)
        feature_model, meta = load_feature_model(model_spec(model, weights, image_size))
        done_paths, array, failures = extract_features(feature_model, meta, paths, batch_size, pooling,
                                                       image_bar(len(paths)))
        write_feature_file(out, done_paths, [array], failures, meta, pooling)
        count = len(done_paths)
    for p, reason in failures:
        click.echo(f"skipped {one_line(p)}: {one_line(reason)}", err=True)
    click.echo(f"{count} image(s) -> {out}" + (f", {len(failures)} skipped" if failures else ""))
