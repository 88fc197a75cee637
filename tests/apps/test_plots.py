"""The run's pictures contain their data and their text (issue 13, item 3): axis limits hold every plotted
value; titles, tick labels and legends lie inside the figure (measured with the renderer's text extents);
legends never sit on the curves; the augment preview shows the original first."""
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tlkit.apps import plots

HISTORY = {"loss": [0.878, 0.62, 0.41, 0.35, 0.2], "val_loss": [0.95, 0.7, 0.66, 0.61, 0.64],
           "accuracy": [0.52, 0.71, 0.83, 0.86, 0.93], "val_accuracy": [0.48, 0.66, 0.81, 0.88, 0.87],
           "stage": [1, 1, 1, 2, 2]}


def inside(inner, outer, slack=1.0):
    return (inner.x0 >= outer.x0 - slack and inner.y0 >= outer.y0 - slack and inner.x1 <= outer.x1 + slack
            and inner.y1 <= outer.y1 + slack)


def texts_of(fig):
    """Every text that is drawn: titles, axis labels, tick labels of ticks in view, legend texts, annotations."""
    texts = [t for t in fig.texts]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            texts += legend.get_texts()
        if not ax.axison:  # an image tile: no axis is drawn
            continue
        texts += [ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            texts += [label for loc, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
                      if lo - 1e-9 <= loc <= hi + 1e-9]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def assert_everything_fits(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for text in texts_of(fig):
        assert inside(text.get_window_extent(renderer), box), f"{text.get_text()!r} sticks out of the figure"
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            assert inside(legend.get_window_extent(renderer), box), "legend outside the figure"


def test_curve_axes_hold_every_value_and_the_legend_stays_off_the_curves():
    fig = plots.draw_curves(HISTORY, kept_epoch=4, stage2_note="3 layers from fire9/squeeze1x1")
    assert_everything_fits(fig)
    renderer = fig.canvas.get_renderer()
    data_axes = [ax for ax in fig.axes if ax.get_title() in ("loss", "accuracy")]
    assert len(data_axes) == 2
    for ax in data_axes:
        lo, hi = ax.get_ylim()
        left, right = ax.get_xlim()
        curves = [l for l in ax.get_lines() if len(l.get_xdata()) > 2]
        assert len(curves) == 2
        for line in curves:
            y, x = np.asarray(line.get_ydata()), np.asarray(line.get_xdata())
            assert lo <= y.min() and y.max() <= hi, (ax.get_title(), lo, hi)  # 0.878 is inside, not above
            assert left <= x.min() and x.max() <= right
            assert list(x) == [1, 2, 3, 4, 5]  # epochs counted from 1
        legend = ax.get_legend()
        # The legend lies outside the plotting area: it cannot cover a curve.
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
        labels = [t.get_text() for t in legend.get_texts()]
        assert "stage 2 begins (3 layers from fire9/squeeze1x1)" in labels and "kept: epoch 4" in labels
        verticals = {float(l.get_xdata()[0]) for l in ax.get_lines() if len(set(l.get_xdata())) == 1}
        assert verticals == {3.5, 4.0}  # stage 2 starts after epoch 3; epoch 4 was kept


def test_curves_with_gaps_nan_and_no_data():
    fig = plots.draw_curves({"loss": [1.0, float("nan"), 0.5, None], "stage": [1, 1, 1, 1]})
    assert_everything_fits(fig)
    ax = fig.axes[0]
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [1, 3] and ax.get_ylim()[0] <= 0.5 and ax.get_ylim()[1] >= 1.0


@pytest.mark.parametrize("names", [["ants", "bees"],
                                   [f"class_with_a_long_name_{i:02d}" for i in range(40)]])
def test_confusion_title_and_labels_fit_for_few_and_many_classes(names):
    n = len(names)
    matrix = np.random.default_rng(0).integers(0, 50, (n, n))
    fig = plots.draw_confusion(matrix, names)
    assert_everything_fits(fig)
    ax = fig.axes[0]
    assert ax.get_title() == "Confusion matrix" and ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), matrix)
    if n == 2:  # counts written in the cells
        assert sorted(t.get_text() for t in ax.texts) == sorted(str(v) for v in matrix.ravel())


def test_misclassified_grid_labels_fit(tmp_path):
    items = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (30, 20), (40 * i, 0, 0)).save(path)
        items.append({"path": str(path), "true": "a_very_long_class_name_indeed", "predicted": "bees",
                      "probability": 0.99 - i / 10})
    fig = plots.draw_misclassified(items)
    assert_everything_fits(fig)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("true: a_very_long_class") and "predicted: bees 0.99" in titles[0]
    plots.plot_misclassified(items, tmp_path / "wrong.png")
    with Image.open(tmp_path / "wrong.png") as im:
        assert im.format == "PNG"


def test_augment_preview_shows_the_original_first(tmp_path, monkeypatch):
    from tlkit.cli import main
    from tlkit.utils import figures

    picture = np.zeros((32, 32, 3), np.uint8)
    picture[:, :16] = 255
    Image.fromarray(picture).save(tmp_path / "p.png")
    shown = []
    save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: (shown.append(fig), save(fig, path)))
    result = CliRunner().invoke(main, ["augment", str(tmp_path / "p.png"), "-n", "3", "--size", "32", "--flip",
                                       "horizontal", "--rotation", "30", "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    fig, = shown
    tiles = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in tiles] == ["original", "1", "2", "3"]
    np.testing.assert_array_equal(tiles[0].get_images()[0].get_array(), picture)
    assert any(not np.array_equal(ax.get_images()[0].get_array(), picture) for ax in tiles[1:])
    assert_everything_fits(fig)
    with Image.open(tmp_path / "grid.png") as im:
        assert im.format == "PNG" and im.width > 100


def test_curves_gain_learning_rate_and_gradient_norm_panels_when_monitored():
    history = dict(HISTORY, learning_rate=[1e-3, 1e-3, 1e-3, 1e-5, 1e-5],
                   **{"grad_norm/head": [0.5, 0.3, 0.2, 0.1, 0.05], "grad_norm/block5": [None, None, None, 2e-3, 1e-3]})
    fig = plots.draw_curves(history, kept_epoch=4)
    assert_everything_fits(fig)
    by_title = {ax.get_title(): ax for ax in fig.axes}
    assert {"loss", "accuracy", "learning rate", "gradient norm (mean per step)"} <= set(by_title)
    lr_ax, grad_ax = by_title["learning rate"], by_title["gradient norm (mean per step)"]
    assert lr_ax.get_yscale() == "log" and grad_ax.get_yscale() == "log"
    lines = {l.get_label(): l for l in grad_ax.get_lines() if len(set(l.get_xdata())) > 1 or l.get_label() != "_"}
    assert list(lines["block5"].get_xdata()) == [4, 5]  # only stage 2 trains the base's blocks
    np.testing.assert_allclose(lines["head"].get_ydata(), history["grad_norm/head"])
    lo, hi = grad_ax.get_ylim()
    assert lo <= 1e-3 and hi >= 0.5
    renderer = fig.canvas.get_renderer()
    titles = [by_title[t].title.get_window_extent(renderer) for t in ("learning rate", "gradient norm (mean per step)")]
    for ax in (by_title["loss"], by_title["accuracy"]):  # the top row's legends stay clear of the row below
        legend = ax.get_legend().get_window_extent(renderer)
        assert not any(legend.overlaps(t) for t in titles)
        assert not any(legend.overlaps(a.get_window_extent(renderer)) for a in (lr_ax, grad_ax))
