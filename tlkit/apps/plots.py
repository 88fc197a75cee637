"""Training curves and confusion matrices drawn with Pillow (no plotting dependency)."""
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tlkit.utils.io import atomic_path

TRAIN_COLOR = (31, 119, 180)
VAL_COLOR = (255, 127, 14)
GRID = (225, 225, 225)
TEXT = (40, 40, 40)


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _nice_ticks(lo, hi, count=5):
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 0.5:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _panel(draw, box, title, series, font, small):
    """One line chart in ``box`` (x0, y0, x1, y1); series: [(label, values, color), ...]."""
    x0, y0, x1, y1 = box
    draw.text((x0 + (x1 - x0) // 2, y0), title, fill=TEXT, font=font, anchor="mt")
    left, top, right, bottom = x0 + 60, y0 + 30, x1 - 15, y1 - 45
    values = [v for _, vals, _ in series for v in vals if v is not None and math.isfinite(v)]
    n = max((len(vals) for _, vals, _ in series), default=0)
    if not values or n == 0:
        draw.text(((left + right) // 2, (top + bottom) // 2), "no data", fill=TEXT, font=small, anchor="mm")
        return
    ticks = _nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    sx = lambda i: left + (right - left) * (i / max(n - 1, 1))
    sy = lambda v: bottom - (bottom - top) * ((v - lo) / (hi - lo))
    for t in ticks:
        y = sy(t)
        draw.line([(left, y), (right, y)], fill=GRID)
        draw.text((left - 6, y), f"{t:g}", fill=TEXT, font=small, anchor="rm")
    step = max(1, math.ceil(n / 10))
    for i in range(0, n, step):
        draw.text((sx(i), bottom + 6), str(i + 1), fill=TEXT, font=small, anchor="mt")
    draw.text(((left + right) // 2, bottom + 24), "epoch", fill=TEXT, font=small, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline=TEXT)
    for li, (label, vals, color) in enumerate(series):
        pts = [(sx(i), sy(v)) for i, v in enumerate(vals) if v is not None and math.isfinite(v)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=3)
        for p in pts:
            draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=color)
        lx, ly = right - 110, top + 8 + 18 * li
        draw.line([(lx, ly + 6), (lx + 20, ly + 6)], fill=color, width=3)
        draw.text((lx + 26, ly), label, fill=TEXT, font=small)


def plot_curves(history, path, stage_boundaries=()):
    """Loss and accuracy per epoch, training and validation, side by side, as a PNG."""
    img = Image.new("RGB", (1100, 450), "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(18), _font(13)
    for k, metric in enumerate(("loss", "accuracy")):
        series = [(name, list(history.get(key, [])), color)
                  for name, key, color in (("training", metric, TRAIN_COLOR), ("validation", f"val_{metric}", VAL_COLOR))
                  if history.get(key)]
        _panel(draw, (k * 550, 10, (k + 1) * 550, 440), metric, series, font, small)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def plot_confusion(matrix, class_names, path, title="Confusion matrix (rows: true, columns: predicted)"):
    """A heat map of counts with the class names, as a PNG."""
    matrix = np.asarray(matrix)
    n = len(class_names)
    cell = max(28, min(80, 640 // max(n, 1)))
    font, small = _font(16), _font(max(10, min(14, cell // 3)))
    label_w = max(90, 8 * max((len(c) for c in class_names), default=4))
    width, height = label_w + cell * n + 40, label_w + cell * n + 70
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((width // 2, 10), title, fill=TEXT, font=font, anchor="mt")
    ox, oy = label_w + 20, label_w + 40
    peak = matrix.max() if matrix.size else 1
    for i in range(n):
        for j in range(n):
            v = matrix[i, j]
            shade = int(255 - 200 * (v / peak if peak else 0))
            fill = (shade, shade, 255) if i != j else (shade, 255, shade)
            box = [ox + j * cell, oy + i * cell, ox + (j + 1) * cell, oy + (i + 1) * cell]
            draw.rectangle(box, fill=fill, outline=(255, 255, 255))
            draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), str(int(v)), fill=TEXT, font=small,
                      anchor="mm")
        draw.text((ox - 6, oy + i * cell + cell / 2), class_names[i], fill=TEXT, font=small, anchor="rm")
        label = Image.new("RGBA", (label_w, cell), (255, 255, 255, 0))
        ImageDraw.Draw(label).text((0, cell / 2), class_names[i], fill=TEXT, font=small, anchor="lm")
        rotated = label.rotate(90, expand=True)
        img.paste(rotated, (int(ox + i * cell), int(oy - label_w - 4)), rotated)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
