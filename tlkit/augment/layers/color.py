"""Keras 3's value preprocessing layers: RandomContrast and RandomBrightness (colour steps that fuse
after the warp), Rescaling and Normalization (plain element-wise layers, any rank, with gradients)."""
import numpy as np

from tlkit.augment.layers.base import ImagePreprocessingLayer, symmetric_factor
from tlkit.augment.layers.fusion import ColorStep
from tlkit.engine.layer import Layer

EPSILON = 1e-7  # Keras's backend.epsilon(): the smallest standard deviation Normalization divides by


def _value_range(value_range):
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
        raise ValueError("The `value_range` argument should be a list of two numbers. "
                         f"Received: value_range={value_range}")
    return [float(v) for v in value_range]


class RandomContrast(ImagePreprocessingLayer):
    """Per image, ``(x - mean) * k + mean`` per channel with k in [1 - lower, 1 + upper], clipped to
    ``value_range``. As Keras 3, a number f gives (lower, upper) = (0, f)."""

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = symmetric_factor(factor, "factor", bounds=(0.0, 1.0))
        self.value_range = _value_range(value_range)

    def draw(self, n, h, w, training):
        if not training:
            return None
        k = self.rng().uniform(1.0 - self.factor[0], 1.0 + self.factor[1], n)
        return ColorStep(lo=self.value_range[0], hi=self.value_range[1], contrast=k)

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor), "value_range": list(self.value_range)}


class RandomBrightness(ImagePreprocessingLayer):
    """Per image, add ``factor`` x (value range width), clipped to ``value_range``."""

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = symmetric_factor(factor, "factor")
        self.value_range = sorted(_value_range(value_range))

    def draw(self, n, h, w, training):
        if not training:
            return None
        low, high = self.value_range
        delta = self.rng().uniform(self.factor[0], self.factor[1], n) * (high - low)
        return ColorStep(b=delta[:, None], lo=low, hi=high)

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor), "value_range": list(self.value_range)}


class Rescaling(Layer):
    """``x * scale + offset`` (scale and offset: numbers or arrays broadcasting over the last axes)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset
        self._scale = np.asarray(scale, np.float32)
        self._offset = np.asarray(offset, np.float32)

    def call(self, inputs, training=False):
        return (np.asarray(inputs, np.float32) * self._scale + self._offset).astype(np.float32, copy=False)

    def forward(self, inputs, training=False):
        return self.call(inputs), np.shape(inputs)

    def backward(self, shape, dy, need_input_grad=True, need_weight_grad=True):
        return np.broadcast_to(dy * self._scale, shape).astype(np.float32), []

    def get_config(self):
        as_config = (lambda v: v.tolist() if isinstance(v, np.ndarray) else v)
        return {**super().get_config(), "scale": as_config(self.scale), "offset": as_config(self.offset)}


class Normalization(Layer):
    """``(x - mean) / max(sqrt(variance), 1e-7)`` per feature of ``axis`` (``invert``: the inverse).

    ``mean``/``variance`` given: fixed; otherwise ``adapt(data)`` computes them from an array or
    an iterable of batches (or (x, y) pairs), and they are saved with the model as weights.
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = () if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
        if (mean is None) != (variance is None):
            raise ValueError("When setting values directly, both `mean` and `variance` must be set. "
                             f"Received: mean={mean} and variance={variance}")
        if mean is not None and np.shape(mean) != np.shape(variance):
            raise ValueError("When setting values directly, `mean` and `variance` must have the same shape. "
                             f"Received: mean shape {np.shape(mean)} and variance shape {np.shape(variance)}")
        self.input_mean, self.input_variance, self.invert = mean, variance, bool(invert)
        self.adapt_mean = self.adapt_variance = None

    def build(self, input_shape):
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(f"All `axis` values must be in the range [-ndim, ndim). Received inputs with "
                             f"ndim={ndim}, while axis={self.axis}")
        self._keep = tuple(sorted(a % ndim for a in self.axis))
        if any(input_shape[d] is None for d in self._keep):
            raise ValueError(f"All `axis` values to be kept must have a known shape. Received axis={self.axis}, "
                             f"inputs.shape={tuple(input_shape)}")
        self._broadcast = tuple(input_shape[d] if d in self._keep else 1 for d in range(ndim))
        if self.input_mean is None:
            shape = tuple(input_shape[d] for d in self._keep)
            self.adapt_mean = self.add_weight(shape, "zeros", name="mean", trainable=False)
            self.adapt_variance = self.add_weight(shape, "ones", name="variance", trainable=False)
        self.built = True

    def _stats(self):
        if self.input_mean is not None:
            mean, var = np.asarray(self.input_mean, np.float32), np.asarray(self.input_variance, np.float32)
            return (np.broadcast_to(mean, self._broadcast) if mean.ndim else mean,
                    np.broadcast_to(var, self._broadcast) if var.ndim else var)
        return (np.asarray(self.adapt_mean.numpy()).reshape(self._broadcast),
                np.asarray(self.adapt_variance.numpy()).reshape(self._broadcast))

    def adapt(self, data, steps=None):
        """Mean and variance of ``data`` (an array, or an iterable of batches or (x, y) pairs), streamed."""
        batches = [data] if isinstance(data, np.ndarray) else data
        count, mean, m2 = 0, None, None
        for step, batch in enumerate(batches):
            if steps is not None and step >= steps:
                break
            x = np.asarray(batch[0] if isinstance(batch, tuple) else batch, np.float64)
            if not self.built:
                self.build((None,) + x.shape[1:])
            reduce = tuple(d for d in range(x.ndim) if d not in self._keep)
            k = int(np.prod([x.shape[d] for d in reduce]))
            bmean = x.mean(axis=reduce)
            bm2 = ((x - x.mean(axis=reduce, keepdims=True)) ** 2).sum(axis=reduce)
            if mean is None:
                count, mean, m2 = k, bmean, bm2
            else:  # Chan et al.'s pairwise update: exact for any batch sizes
                delta = bmean - mean
                total = count + k
                mean = mean + delta * k / total
                m2 = m2 + bm2 + delta ** 2 * count * k / total
                count = total
        if mean is None:
            raise ValueError("Normalization.adapt: the data holds no samples.")
        if self.input_mean is not None:
            raise ValueError("Normalization.adapt: mean and variance were given at construction; drop them to adapt.")
        self.adapt_mean.assign(mean.astype(np.float32))
        self.adapt_variance.assign((m2 / count).astype(np.float32))

    def call(self, inputs, training=False):
        x = np.asarray(inputs, np.float32)
        mean, var = self._stats()
        std = np.maximum(np.sqrt(var), np.float32(EPSILON))
        return (mean + x * std if self.invert else (x - mean) / std).astype(np.float32, copy=False)

    def forward(self, inputs, training=False):
        return self.call(inputs), np.shape(inputs)

    def backward(self, shape, dy, need_input_grad=True, need_weight_grad=True):
        std = np.maximum(np.sqrt(self._stats()[1]), np.float32(EPSILON))
        return np.broadcast_to(dy * std if self.invert else dy / std, shape).astype(np.float32), []

    def get_config(self):
        as_list = (lambda v: np.asarray(v).tolist() if v is not None else None)
        return {**super().get_config(), "axis": list(self.axis), "invert": self.invert,
                "mean": as_list(self.input_mean), "variance": as_list(self.input_variance)}
