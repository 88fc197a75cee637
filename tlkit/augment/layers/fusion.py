"""Running a run of preprocessing layers: one warp per run of compatible geometric steps, then the
colour steps folded into one clipped affine map per image and channel (one pass, plus a
reduction for each contrast)."""
import numpy as np

from tlkit.augment import affine, color_kernels


class GeometricStep:
    """``mats`` (N, 2, 3): output (row, col) -> source (row, col); ``size`` the output (h, w).
    ``fill`` (mode, value) and ``order`` (0/1) are None when the step never samples outside the
    picture or between pixels (flips, crops): it then fuses with any neighbour. ``window`` (top,
    left, height, width): the step reads only that part of its input, edges clamped there (Keras
    crops before it resizes); ``mats`` are then relative to the window, which starts a new warp."""

    def __init__(self, mats, size, fill=None, order=None, window=None):
        self.mats = np.asarray(mats, np.float64)
        self.size = (int(size[0]), int(size[1]))
        self.fill = fill
        self.order = order
        self.window = window

    def fits(self, other):
        return ((self.fill is None or other.fill is None or self.fill == other.fill)
                and (self.order is None or other.order is None or self.order == other.order))

    def then(self, other):
        """This step followed by ``other``: source = self(other(output))."""
        a, b = self.mats, other.mats
        lin = a[:, :, :2] @ b[:, :, :2]
        shift = (a[:, :, :2] @ b[:, :, 2:])[..., 0] + a[:, :, 2]
        return GeometricStep(np.concatenate([lin, shift[..., None]], -1), other.size,
                             self.fill if self.fill is not None else other.fill,
                             self.order if self.order is not None else other.order)


class ColorStep:
    """``clip(a * x + b, lo, hi)`` per image and channel (arrays broadcastable to (N, C)); with
    ``contrast`` (N,), ``x`` is first ``(x - mean) * contrast + mean`` about each channel's mean."""

    def __init__(self, a=1.0, b=0.0, lo=-np.inf, hi=np.inf, contrast=None):
        self.a, self.b, self.lo, self.hi, self.contrast = a, b, lo, hi, contrast


class ArrayStep:
    """A step that is neither a warp nor a colour map (RandomErasing): ``apply(x)`` edits x, the
    run's own float32 buffer, in place after everything before it has been applied."""

    def __init__(self, apply):
        self.apply = apply


class SourceStep:
    """Colour ops a policy draws before its geometric ops (RandAugment...): ``apply(x)`` edits, in
    place, the run's float32 buffer holding the pictures the pending warp will read."""

    def __init__(self, apply):
        self.apply = apply


class ClipAffine:
    """A folded run of colour steps: x -> clip(a * x + b, lo, hi), (N, C) float64 each."""

    def __init__(self, n, c):
        self.a, self.b = np.ones((n, c)), np.zeros((n, c))
        self.lo, self.hi = np.full((n, c), -np.inf), np.full((n, c), np.inf)

    def is_identity(self):
        return (self.a == 1).all() and (self.b == 0).all() and np.isinf(self.lo).all() and np.isinf(self.hi).all()

    def then(self, a, b, lo, hi):
        """Follow the current map by clip(a * y + b, lo, hi): still a clipped affine map."""
        n, c = self.a.shape
        a, b, lo, hi = (np.broadcast_to(np.asarray(v, np.float64), (n, c)) for v in (a, b, lo, hi))
        with np.errstate(invalid="ignore"):  # 0 * inf: a constant map
            ends = np.stack([a * self.lo + b, a * self.hi + b])
        ends = np.where(np.isnan(ends), b, ends)
        new_lo = np.maximum(ends.min(0), lo)
        new_hi = np.minimum(ends.max(0), hi)
        empty = new_lo > new_hi  # every value lands outside [lo, hi] on one side: a constant
        constant = np.clip(ends[0], lo, hi)
        self.lo = np.where(empty, constant, new_lo)
        self.hi = np.where(empty, constant, new_hi)
        self.a, self.b = a * self.a, a * self.b + b


def same_buffer(x, y):
    return (isinstance(x, np.ndarray) and x.shape == y.shape and x.dtype == y.dtype
            and x.__array_interface__["data"][0] == y.__array_interface__["data"][0])


def _warp(images, step, parallel=True):
    n, c = images.shape[0], images.shape[3]
    out = np.empty((n,) + step.size + (c,), np.float32)
    if n == 0:
        return out
    mode, value = step.fill or ("nearest", 0.0)
    if mode == "padded":  # torchvision's zero padding (the policies)
        return affine.warp_padded(images, step.mats, value, 0 if step.order is None else step.order, out, parallel)
    return affine.warp(images, step.mats, mode, value, 0 if step.order is None else step.order, out=out,
                       parallel=parallel)


def run_layers(images, layers, training, parallel=True):
    """(N, H, W, C) images through ``layers`` (each drawing for this batch), as float32.
    ``parallel``: numba's thread pool for the warp (worker threads pass False: no nested pools)."""
    x = images
    owned = False  # whether x is this function's own buffer (colour maps then work in place)
    n, h, w, c = x.shape
    geo, col = None, ClipAffine(n, c)

    def flush_color():
        nonlocal x, owned, col
        if not col.is_identity():
            if not owned:
                x, owned = np.array(x, np.float32), True
            color_kernels.clip_affine(x, col.a, col.b, col.lo, col.hi)
        col = ClipAffine(n, c)

    def flush_geometry():
        nonlocal x, owned, geo
        if geo is not None:
            x, owned, geo = _warp(x, geo, parallel), True, None

    steps = []
    for layer in layers:
        drawn = layer.draw(n, h, w, training)  # a step, None, or a list of steps (the policies)
        drawn = drawn if isinstance(drawn, list) else [drawn]
        steps += drawn
        for step in drawn:
            if isinstance(step, GeometricStep):
                h, w = step.size
    for step in steps:
        if step is None:
            continue
        if isinstance(step, (SourceStep, ArrayStep)):
            if isinstance(step, ArrayStep):  # a SourceStep edits the pictures the pending warp reads
                flush_geometry()
            flush_color()
            if not owned:
                x, owned = np.array(x, np.float32), True
            step.apply(x)
            continue
        if isinstance(step, GeometricStep):
            flush_color()
            if geo is not None and (step.window is not None or not geo.fits(step)):
                flush_geometry()
            if step.window is not None:
                top, left, wh, ww = step.window
                x, owned = x[:, top:top + wh, left:left + ww], False
            geo = step if geo is None else geo.then(step)
            continue
        flush_geometry()
        if step.contrast is not None:
            x = np.ascontiguousarray(x, np.float32)
            mean = color_kernels.channel_means(x, col.a, col.b, col.lo, col.hi)
            k = np.asarray(step.contrast, np.float64).reshape(n, 1)
            col.then(k, (1 - k) * mean, -np.inf, np.inf)
        col.then(step.a, step.b, step.lo, step.hi)
    flush_geometry()
    flush_color()
    return x if x.dtype == np.float32 else x.astype(np.float32)
