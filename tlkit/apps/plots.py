"""The pictures of a run, drawn with matplotlib (Agg, no display): training curves, confusion matrix,
and the most confidently wrong images.

Each ``draw_*`` returns the figure (tests measure it); each ``plot_*`` draws and writes a PNG.
"""
import numpy as np

from tlkit.utils.figures import image_grid, new_figure, save_figure

TRAIN_COLOR = "tab:blue"
VAL_COLOR = "tab:orange"
MAX_ANNOTATED_CLASSES = 30  # beyond this the counts would not be readable in the cells
GRAD_NORM_PREFIX = "grad_norm/"  # the history columns of GradientMonitor(log_norms=True)


def _finite_series(values):
    x = np.arange(1, len(values) + 1, dtype=float)
    y = np.array([np.nan if v is None else float(v) for v in values], float)
    keep = np.isfinite(y)
    return x[keep], y[keep]


def draw_curves(history, kept_epoch=None, stage2_note=None):
    """Loss and accuracy per epoch (counted from 1), training and validation. A dashed line marks where
    stage 2 began (from ``history["stage"]``), a dotted one the epoch whose weights were kept. When the
    history holds them, a second row shows the learning rate and the gradient norm of each group of
    layers (``grad_norm/<group>`` columns, e.g. the head and each block of the base in stage 2)."""
    stages = list(history.get("stage", []))
    stage2_start = stages.index(2) + 1 if 2 in stages else None
    grad_keys = sorted(k for k in history if k.startswith(GRAD_NORM_PREFIX))
    monitored = bool(grad_keys) or "learning_rate" in history
    fig = new_figure((11, 8.4 if monitored else 4.4))
    axes = fig.subplots(2, 2).ravel() if monitored else fig.subplots(1, 2)
    if monitored:
        _draw_monitoring(axes[2], axes[3], history, grad_keys, stage2_start)
    for ax, metric in zip(axes[:2], ("loss", "accuracy")):
        drawn = False
        for label, key, color in (("training", metric, TRAIN_COLOR), ("validation", f"val_{metric}", VAL_COLOR)):
            x, y = _finite_series(history.get(key) or [])
            if len(x):
                ax.plot(x, y, "o-", color=color, label=label, markersize=4)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        if stage2_start is not None:
            ax.axvline(stage2_start - 0.5, color="gray", linestyle="--", linewidth=1,
                       label="stage 2 begins" + (f" ({stage2_note})" if stage2_note else ""))
        if kept_epoch is not None:
            ax.axvline(kept_epoch, color="green", linestyle=":", linewidth=1.5, label=f"kept: epoch {kept_epoch}")
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(True, color="0.9")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if drawn or stage2_start is not None or kept_epoch is not None:
            # Below the axes: a legend never covers a curve.
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8, frameon=False)
    return fig


def _draw_monitoring(lr_ax, grad_ax, history, grad_keys, stage2_start):
    x, y = _finite_series(history.get("learning_rate") or [])
    if len(x):
        lr_ax.plot(x, y, "o-", color="tab:green", markersize=4)
    else:
        lr_ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=lr_ax.transAxes)
    for key in grad_keys:
        x, y = _finite_series(history[key])
        keep = y > 0  # a log scale: a zero norm is shown by its absence
        if keep.any():
            grad_ax.plot(x[keep], y[keep], "o-", markersize=3, label=key[len(GRAD_NORM_PREFIX):])
    if grad_keys:
        grad_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4, fontsize=7, frameon=False)
    for ax, title in ((lr_ax, "learning rate"), (grad_ax, "gradient norm (mean per step)")):
        if ax.lines:
            ax.set_yscale("log")
        if stage2_start is not None:
            ax.axvline(stage2_start - 0.5, color="gray", linestyle="--", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, color="0.9")
        ax.xaxis.get_major_locator().set_params(integer=True)


def plot_curves(history, path, kept_epoch=None, stage2_note=None):
    save_figure(draw_curves(history, kept_epoch, stage2_note), path)


def draw_confusion(matrix, class_names, title="Confusion matrix"):
    """A heat map of counts, rows the true class and columns the predicted one, sized for the class count."""
    matrix = np.asarray(matrix)
    n = len(class_names)
    longest = max((len(str(c)) for c in class_names), default=1)
    side = min(max(3.0, 0.32 * n), 30.0) + min(longest, 40) * 0.08
    fig = new_figure((side + 1.5, side + 1.0))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fontsize = 10 if n <= 10 else max(5, 10 - n // 10)
    ax.set_xticks(range(n), [str(c) for c in class_names], rotation=90 if n > 4 or longest > 8 else 0,
                  fontsize=fontsize)
    ax.set_yticks(range(n), [str(c) for c in class_names], fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= MAX_ANNOTATED_CLASSES:
        peak = matrix.max() if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=fontsize,
                        color="white" if peak and matrix[i, j] > peak / 2 else "black")
    return fig


def plot_confusion(matrix, class_names, path, title="Confusion matrix"):
    save_figure(draw_confusion(matrix, class_names, title), path)


def draw_misclassified(items, tile=128, columns=None):
    """A grid of the most confidently wrong images; ``items``: [{"path", "true", "predicted", "probability"}]."""
    from tlkit.augment import img_to_array, load_img

    images, titles = [], []
    for item in items:
        try:
            images.append(img_to_array(load_img(item["path"], target_size=(tile, tile))).astype(np.uint8))
        except Exception:  # the file changed since it was scored: a grey tile, still labelled
            images.append(np.full((tile, tile, 3), 200, np.uint8))
        titles.append(f"true: {_short(item['true'])}\npredicted: {_short(item['predicted'])} "
                      f"{item['probability']:.2f}")
    if not images:
        fig = new_figure((4, 1.5))
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        return fig
    return image_grid(images, titles, columns, title="Most confidently wrong")


def plot_misclassified(items, path):
    save_figure(draw_misclassified(items), path)


def _short(name, width=18):
    name = str(name)
    return name if len(name) <= width else name[:width - 1] + "…"
