"""``tlkit augment``: a preview grid of augmented pictures, because looking beats reading.

    tlkit augment photo.jpg -n 16 --out grid.png --rotation 30 --shift 0.2 --zoom 0.2 \\
        --shear 0.2 --flip horizontal --brightness 0.8,1.2 --fill-mode nearest

SOURCE is one picture (n augmented versions of it) or a folder (n pictures
sampled from it, each augmented once). The options are ImageDataGenerator's.
"""
import math
import os
import random

import click
import numpy as np


def _brightness(ctx, param, value):
    if value is None:
        return None
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1 and 0 <= parts[0] < 1:
        return [1 - parts[0], 1 + parts[0]]
    if len(parts) != 2 or parts[0] > parts[1]:
        raise click.BadParameter("give LOW,HIGH (e.g. 0.8,1.2) or one spread (0.2 means 0.8,1.2)")
    return parts


def make_grid(tiles, columns, pad=2):
    """(N, H, W, C) uint8 tiles -> one (rows*(H+pad)-pad, cols*(W+pad)-pad, C) picture on white."""
    n, h, w, c = tiles.shape
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, c), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, k = divmod(i, columns)
        grid[r * (h + pad):r * (h + pad) + h, k * (w + pad):k * (w + pad) + w] = tile
    return grid


@click.command("augment")
@click.argument("source", type=click.Path(exists=True))
@click.option("-n", "count", type=click.IntRange(1, 400), default=16, show_default=True,
              help="How many augmented pictures.")
@click.option("--out", type=click.Path(dir_okay=False), default="augment_grid.png", show_default=True,
              help="The grid picture to write (.png or .jpg).")
@click.option("--size", type=click.IntRange(16, 1024), default=224, show_default=True,
              help="Each tile is SIZE x SIZE pixels.")
@click.option("--rotation", type=float, default=0.0, help="rotation_range in degrees, e.g. 30.")
@click.option("--shift", type=float, default=0.0, help="width and height shift_range, e.g. 0.2.")
@click.option("--zoom", type=float, default=0.0, help="zoom_range, e.g. 0.2 for [0.8, 1.2].")
@click.option("--shear", type=float, default=0.0, help="shear_range in degrees.")
@click.option("--flip", type=click.Choice(["none", "horizontal", "vertical", "both"]), default="none",
              show_default=True)
@click.option("--brightness", callback=_brightness, help="brightness_range LOW,HIGH, e.g. 0.8,1.2.")
@click.option("--channel-shift", type=float, default=0.0, help="channel_shift_range, e.g. 20.")
@click.option("--fill-mode", type=click.Choice(["constant", "nearest", "reflect", "wrap"]), default="nearest",
              show_default=True)
@click.option("--columns", type=click.IntRange(1, 100), default=None, help="Tiles per row (default: square).")
@click.option("--seed", type=int, default=0, show_default=True)
def augment(source, count, out, size, rotation, shift, zoom, shear, flip, brightness, channel_shift, fill_mode,
            columns, seed):
    """A grid of augmented versions of SOURCE (a picture, or pictures sampled from a folder)."""
    # Imported when the command runs: every `tlkit` command line registers this one, and the
    # generator brings numba with it.
    from tlkit.augment.generator import ImageDataGenerator
    from tlkit.augment.image_io import atomic_save, decode, list_pictures, scan_images

    if os.path.isdir(source):
        paths, bad = scan_images(list_pictures(source, follow_links=True))
        if not paths:
            raise click.ClickException(f"{source} holds no readable pictures.")
        for p, reason in bad:
            click.echo(f"skipped {p}: {reason}", err=True)
        chosen = random.Random(seed).choices(paths, k=count) if len(paths) < count \
            else random.Random(seed).sample(paths, count)
    else:
        chosen = [source] * count
    images = np.stack([decode(p, "rgb", (size, size), "bilinear") for p in chosen])
    gen = ImageDataGenerator(rotation_range=rotation, width_shift_range=shift, height_shift_range=shift,
                             zoom_range=zoom, shear_range=shear, horizontal_flip=flip in ("horizontal", "both"),
                             vertical_flip=flip in ("vertical", "both"), brightness_range=brightness,
                             channel_shift_range=channel_shift, fill_mode=fill_mode)
    tiles = gen.transform_batch(images, np.random.RandomState(seed))
    tiles = np.clip(np.rint(tiles), 0, 255).astype(np.uint8)
    grid = make_grid(tiles, columns or math.ceil(math.sqrt(count)))
    from PIL import Image

    ext = os.path.splitext(out)[1].lower()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}.get(ext)
    if fmt is None:
        raise click.BadParameter(f"cannot write {ext or 'a file without extension'}; use .png or .jpg",
                                 param_hint="--out")
    atomic_save(Image.fromarray(grid), out, fmt)
    click.echo(f"Wrote {out}: {count} augmented picture(s) of {source}, {grid.shape[1]}x{grid.shape[0]} pixels.")
