"""matplotlib figures without a display (Agg), saved atomically, and a labelled image grid.

    fig = new_figure((8, 4))
    ax = fig.add_subplot()
    ...
    save_figure(fig, "curves.png")

Figures use constrained layout, so titles, tick labels and legends are placed inside the figure.
"""
import math
import os

import numpy as np

from tlkit.utils.io import atomic_path

DPI = 100
FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".bmp": "bmp", ".pdf": "pdf",
           ".svg": "svg"}


def new_figure(size_inches, dpi=DPI):
    """A Figure on the Agg canvas (no display, no global pyplot state), with constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size_inches, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path):
    """Write ``fig`` to ``path`` atomically; the format follows the extension (.png, .jpg, .pdf...)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        raise ValueError(f"cannot write a picture to {os.fspath(path)!r}: use a .png or .jpg file name.")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            fig.savefig(f, format=fmt, dpi=fig.dpi, facecolor="white")


def image_grid(images, titles=None, columns=None, title=None, tile_inches=1.6, dpi=DPI):
    """A figure showing ``images`` ((N, H, W, 3) uint8, or a list of them) in a grid, each with its title.

    Tiles are shown at ``tile_inches`` each; ``columns`` defaults to a near-square grid.
    """
    n = len(images)
    columns = max(1, min(columns or math.ceil(math.sqrt(n)), n))
    rows = max(1, math.ceil(n / columns))
    has_titles = titles is not None and any(titles)
    lines = max((str(t).count("\n") + 1 for t in titles), default=1) if has_titles else 0
    height = rows * (tile_inches + 0.2 * lines) + (0.4 if title else 0)
    fig = new_figure((columns * tile_inches, height), dpi)
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(np.asarray(images[i], np.uint8), interpolation="nearest")
            if has_titles:
                ax.set_title(str(titles[i]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
