"""ZeroPadding1D/2D/3D and Cropping1D/2D: zeros added around, or cells cut from, the spatial axes."""
import numpy as np

from tlkit.engine.layer import Layer
from tlkit.utils.threads import CHUNKS_PER_THREAD, num_threads, run_chunks

# Padded copies of inputs this large are shared by the threads, image by image.
PARALLEL_COPY_BYTES = 4 << 20

_FORMS = {1: "an int or a tuple of 2 ints (before, after)",
          2: "an int, a tuple of 2 ints or 2 tuples of 2 ints",
          3: "an int, a tuple of 3 ints or 3 tuples of 2 ints"}


def spatial_pairs(value, rank, what):
    """Keras's forms of per-axis (before, after) amounts as ``rank`` pairs of non-negative ints:
    int -> the same everywhere; 1-D: (before, after); 2-D/3-D: one symmetric int per axis, or pairs."""
    def ints(v):
        return isinstance(v, (int, np.integer))
    try:
        if ints(value):
            pairs = ((value, value),) * rank
        elif rank == 1 and len(value) == 2 and all(ints(v) for v in value):
            pairs = (tuple(value),)
        elif len(value) == rank and all(ints(v) for v in value):
            pairs = tuple((v, v) for v in value)
        else:
            pairs = tuple(tuple(p) for p in value)
    except TypeError:
        pairs = ()
    if len(pairs) != rank or any(len(p) != 2 or not all(ints(v) and v >= 0 for v in p) for p in pairs):
        raise ValueError(f"`{what}` should be {_FORMS[rank]} of non-negative values. Received: {what}={value!r}")
    return tuple((int(a), int(b)) for a, b in pairs)


class _SpatialEdges(Layer):
    rank = 2
    grow = True  # padding adds the amounts; cropping removes them

    def __init__(self, amounts, data_format=None, what="padding", **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError("tlkit works channels-last: use data_format=None or 'channels_last'.")
        self._what = what
        setattr(self, what, spatial_pairs(amounts, self.rank, what))
        self.data_format = data_format

    @property
    def _pairs(self):
        return getattr(self, self._what)

    def build(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects {self.rank + 2}D input "
                             f"(batch, {self.rank} spatial axes, channels), got shape {tuple(input_shape)}.")
        self.compute_output_shape(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        sign = 1 if self.grow else -1
        spatial = []
        for n, (a, b) in zip(input_shape[1:-1], self._pairs):
            size = None if n is None else n + sign * (a + b)
            if size is not None and size <= 0:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): cropping {self._pairs} leaves "
                                 f"nothing of an input of shape {tuple(input_shape)}. Crop less.")
            spatial.append(size)
        return (input_shape[0],) + tuple(spatial) + (input_shape[-1],)

    def _inner(self, shape):
        """The slices of the larger array (padded output or uncropped input) that hold the smaller one."""
        return (slice(None),) + tuple(slice(a, n - b) for n, (a, b) in zip(shape[1:-1], self._pairs)) + (slice(None),)

    def call(self, inputs, training=False):
        if self.grow:
            return np.pad(inputs, ((0, 0),) + self._pairs + ((0, 0),))
        return np.ascontiguousarray(inputs[self._inner(inputs.shape)])

    def forward(self, inputs, training=False):
        return self.call(inputs), inputs.shape

    def backward(self, shape, dy, need_input_grad=True, need_weight_grad=True):
        if self.grow:
            return np.ascontiguousarray(dy[self._inner(dy.shape)]), []
        dx = np.zeros(shape, np.float32)
        dx[self._inner(shape)] = dy
        return dx, []

    def get_config(self):
        return {**super().get_config(), self._what: [list(p) for p in self._pairs], "data_format": self.data_format}


class ZeroPadding1D(_SpatialEdges):
    """``ZeroPadding1D(2)`` or ``ZeroPadding1D((1, 3))`` over (batch, steps, channels)."""

    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class ZeroPadding2D(_SpatialEdges):
    """``ZeroPadding2D(1)``, ``((top, bottom), (left, right))`` or ``(symmetric_h, symmetric_w)``."""

    # At inference the padded copy goes into a recycled buffer (inference_plan.py): MobileNetV2 pads
    # its largest activations before each stride-2 depthwise conv.
    accepts_output_buffer = True

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)

    def call(self, inputs, training=False, out=None):
        """out: optional array of the padded shape to write into (borders zeroed, then the input)."""
        if out is None:
            return super().call(inputs, training)
        if out.shape[0] != inputs.shape[0] or out.shape[0] == 0:
            out[self._inner(out.shape)] = inputs  # raises numpy's broadcast error on a wrong shape
            return out
        n = inputs.shape[0]
        parts = min(num_threads(), n) if inputs.nbytes >= PARALLEL_COPY_BYTES else 1
        if parts < 2:
            self._pad_images(inputs, out, 0, n)
        else:  # a copy bound by memory: two cores move more bytes a second than one
            chunks = min(n, parts * CHUNKS_PER_THREAD)
            run_chunks([n * i // chunks for i in range(chunks + 1)],
                       lambda slot, lo, hi: self._pad_images(inputs, out, lo, hi), parts)
        return out

    def _pad_images(self, inputs, out, lo, hi):
        """Images lo:hi of ``inputs`` padded into ``out``."""
        (top, bottom), (left, right) = self.padding
        h, w = out.shape[1:3]
        out = out[lo:hi]
        out[:, :top] = 0
        out[:, h - bottom:] = 0
        out[:, top:h - bottom, :left] = 0
        out[:, top:h - bottom, w - right:] = 0
        out[self._inner(out.shape)] = inputs[lo:hi]


class ZeroPadding3D(_SpatialEdges):
    rank = 3

    def __init__(self, padding=(1, 1, 1), data_format=None, **kwargs):
        super().__init__(padding, data_format, **kwargs)


class Cropping1D(_SpatialEdges):
    """``Cropping1D((1, 1))``: cut cells from the start and end of the steps axis."""

    rank = 1
    grow = False

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(cropping, None, "cropping", **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("data_format")
        return config


class Cropping2D(_SpatialEdges):
    """``Cropping2D(((top, bottom), (left, right)))``."""

    grow = False

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(cropping, data_format, "cropping", **kwargs)
