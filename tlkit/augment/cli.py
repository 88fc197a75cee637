"""``tlkit augment``: a preview grid of augmented pictures, because looking beats reading.

    tlkit augment photo.jpg -n 16 --out grid.png --rotation 30 --shift 0.2 --zoom 0.2 \\
        --shear 0.2 --flip horizontal --brightness 0.8,1.2 --fill-mode nearest

SOURCE is one picture (n augmented versions of it) or a folder (n pictures
sampled from it, each augmented once). The options are ImageDataGenerator's.
"""
import os
import random

import click
import numpy as np

from tlkit.augment.options import augmentation_options, generator_arguments


@click.command("augment")
@click.argument("source", type=click.Path(exists=True))
@click.option("-n", "count", type=click.IntRange(1, 400), default=16, show_default=True,
              help="How many augmented pictures.")
@click.option("--out", type=click.Path(dir_okay=False), default="augment_grid.png", show_default=True,
              help="The grid picture to write (.png or .jpg).")
@click.option("--size", type=click.IntRange(16, 1024), default=224, show_default=True,
              help="Each picture is resized to SIZE x SIZE pixels.")
@augmentation_options(flip_default="none", channel_shift=True)
@click.option("--columns", type=click.IntRange(1, 100), default=None, help="Tiles per row (default: square).")
@click.option("--seed", type=int, default=0, show_default=True)
def augment(source, count, out, size, columns, seed, **flags):
    """A grid of augmented versions of SOURCE (a picture, or pictures sampled from a folder), the
    original first."""
    # Imported when the command runs: every `tlkit` command line registers this one, and the
    # generator brings numba with it.
    from tlkit.augment.generator import ImageDataGenerator
    from tlkit.augment.folders import image_files
    from tlkit.augment.image_io import decode, scan_images
    from tlkit.utils.figures import image_grid, save_figure

    if os.path.splitext(out)[1].lower() not in (".png", ".jpg", ".jpeg"):
        raise click.BadParameter(f"cannot write {out!r}; use a .png or .jpg file name", param_hint="--out")
    if os.path.isdir(source):
        paths, bad = scan_images(image_files(source, follow_links=True))
        if not paths:
            raise click.ClickException(f"{source} holds no readable pictures.")
        for p, reason in bad:
            click.echo(f"skipped {p}: {reason}", err=True)
        chosen = random.Random(seed).choices(paths, k=count) if len(paths) < count \
            else random.Random(seed).sample(paths, count)
    else:
        chosen = [source] * count
    images = np.stack([decode(p, "rgb", (size, size), "bilinear") for p in chosen])
    gen = ImageDataGenerator(**generator_arguments(**flags))
    tiles = gen.transform_batch(images.copy(), np.random.RandomState(seed))
    tiles = np.clip(np.rint(tiles), 0, 255).astype(np.uint8)
    # The original first: what the augmentation changed is seen against it.
    shown = [images[0].astype(np.uint8)] + list(tiles)
    names = ["original"] + [f"{i + 1}" if len(set(chosen)) == 1 else f"{i + 1}: {os.path.basename(p)[:16]}"
                            for i, p in enumerate(chosen)]
    fig = image_grid(shown, names, columns, title=f"{count} augmented picture(s) of {os.path.basename(source)}")
    save_figure(fig, out)
    click.echo(f"Wrote {out}: the original and {count} augmented picture(s) of {source}.")
