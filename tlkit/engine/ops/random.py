"""``tlkit.random``: Keras 3's random ops, drawn from tlkit's seeded generator (or a given seed)."""
import numpy as np

from tlkit.engine import random as _engine_random
from tlkit.engine.ops.core import value_of, wrap
from tlkit.engine.ops.math_ops import multiply
from tlkit.engine.ops.shape_ops import _dtype


class SeedGenerator:
    """A generator of its own: ``tlkit.random.normal(shape, seed=SeedGenerator(1337))`` repeats per run."""

    def __init__(self, seed=None, name=None, **kwargs):
        self.rng = np.random.default_rng(seed)
        self.name = name


def _rng(seed):
    if seed is None:
        return _engine_random.get_rng()
    if isinstance(seed, SeedGenerator):
        return seed.rng
    return np.random.default_rng(int(seed))


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    return wrap(_rng(seed).normal(mean, stddev, size=tuple(shape)).astype(_dtype(dtype)))


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    return wrap(_rng(seed).uniform(minval, maxval, size=tuple(shape)).astype(_dtype(dtype)))


def randint(shape, minval, maxval, dtype="int32", seed=None):
    return wrap(_rng(seed).integers(minval, maxval, size=tuple(shape)).astype(_dtype(dtype)))


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normal draws, redrawn until within two standard deviations of the mean."""
    rng = _rng(seed)
    out = rng.standard_normal(size=tuple(shape))
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2
    return wrap((mean + stddev * out).astype(_dtype(dtype)))


def dropout(inputs, rate, noise_shape=None, seed=None):
    """Zero each entry with probability ``rate`` and scale the rest by 1/(1-rate) (differentiable)."""
    shape = np.shape(value_of(inputs)) if noise_shape is None else tuple(noise_shape)
    keep = _rng(seed).random(size=shape) >= rate
    dtype = np.asarray(value_of(inputs)).dtype
    return multiply(inputs, (keep / (1.0 - rate)).astype(dtype if dtype.kind == "f" else np.float32))


def shuffle(x, axis=0, seed=None):
    v = np.asarray(value_of(x))
    order = _rng(seed).permutation(v.shape[axis])
    from tlkit.engine.ops.shape_ops import take

    return take(x, order, axis=axis)


def categorical(logits, num_samples, dtype="int32", seed=None):
    """``num_samples`` class indices per row, drawn from softmax(logits)."""
    z = np.asarray(value_of(logits), np.float64)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    rng = _rng(seed)
    cdf = np.cumsum(p, axis=-1)
    u = rng.random(size=(z.shape[0], num_samples, 1))
    return wrap((u > cdf[:, None, :]).sum(axis=-1).clip(0, z.shape[-1] - 1).astype(_dtype(dtype)))


__all__ = ["SeedGenerator", "normal", "uniform", "randint", "truncated_normal", "dropout", "shuffle", "categorical"]
