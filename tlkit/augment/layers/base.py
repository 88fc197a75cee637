"""The base of tlkit's Keras 3 image preprocessing layers, and how a run of them fuses.

Each layer only *draws* (albumentations-style: parameters apart from pixels): ``draw(n, h, w,
training)`` returns a ``GeometricStep`` (one 2x3 matrix per image mapping an output pixel to its
source, and the output size), a ``ColorStep`` (a clipped affine map per image and channel, see
``color_kernels``), or None (identity). ``fusion.run_steps`` then resamples once per run of
compatible geometric steps on the fused warp kernel and applies the colour steps in one pass.

Inside a model, adjacent preprocessing layers fuse: when a layer's output (in the model's graph)
is read by exactly one other preprocessing layer, the first one applies the whole run and the
followers pass its result through. Called on its own, each layer applies only itself.
"""
import contextlib
import threading

import numpy as np

from tlkit.augment.layers import fusion
from tlkit.engine import layer_calls
from tlkit.engine.layer import Layer
from tlkit.utils.random import get_rng


_drawing = threading.local()


@contextlib.contextmanager
def draws_from(rng):
    """Every preprocessing layer called in this thread draws from ``rng`` meanwhile (an iterator's
    per-batch generator: the same batches for the same seed, whichever worker thread runs them)."""
    previous = getattr(_drawing, "rng", None)
    _drawing.rng = rng
    try:
        yield
    finally:
        _drawing.rng = previous


def current_rng(own):
    """The generator a layer draws from: the one of ``draws_from``, else its own (seeded), else tlkit's."""
    return getattr(_drawing, "rng", None) or own or get_rng()


def _consumers_of(layer):
    """The layers reading this layer's output in the graphs it was called in, or None when unsafe
    to fuse (a branch, several outputs)."""
    readers = set()
    for node in layer._inbound_nodes:
        if len(node.outputs) != 1:
            return None
        users = getattr(node.outputs[0], "consumers", [])
        if len(users) > 1 or getattr(node.outputs[0], "read_by_caller", False):
            return None
        readers.update(id(u.layer) for u in users)
        if users and len(users[0].inputs) != 1:
            return None
    return readers


class ImagePreprocessingLayer(Layer):
    """Base of the preprocessing layers: data format, seeding, and the fusion protocol."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        data_format = data_format or "channels_last"
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}.")
        self.data_format = data_format
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self._expect = None  # the fused output a previous layer of the run handed on to this one

    def __call__(self, inputs, training=None, **kwargs):
        # Keras 3's preprocessing layers default to training=True when called on data outside a
        # model (``RandomFlip()(images)`` flips); inside one, the model's training flag decides.
        if training is None and getattr(layer_calls._state, "depth", 0) == 0:
            training = True
        return super().__call__(inputs, training=training, **kwargs)

    def rng(self):
        """This layer's generator when seeded (same seed, same output), else tlkit's shared one."""
        return current_rng(self._rng)

    def draw(self, n, h, w, training):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    # ----- fusion along a run of layers -----
    def _follower(self):
        """The preprocessing layer that alone reads this one's output in its graph, or None."""
        readers = _consumers_of(self)
        if not readers or len(readers) != 1:
            return None
        rid = next(iter(readers))
        for node in self._inbound_nodes:
            for user in getattr(node.outputs[0], "consumers", []):
                if id(user.layer) == rid and isinstance(user.layer, ImagePreprocessingLayer) \
                        and user.layer is not self and user.layer.data_format == self.data_format:
                    return user.layer
        return None

    def _run(self):
        """This layer and the followers it applies for them (only inside a model's call)."""
        run = [self]
        if getattr(layer_calls._state, "depth", 0) < 2:  # called on its own, not by a model
            return run
        nxt = self._follower()
        while nxt is not None and nxt not in run:
            run.append(nxt)
            nxt = nxt._follower()
        return run

    def call(self, inputs, training=False):
        x = np.asarray(inputs)
        expect, self._expect = self._expect, None
        if expect is not None and fusion.same_buffer(x, expect):
            return x  # a previous layer of the run already applied this one
        run = self._run()
        channels_first = self.data_format == "channels_first"
        images = np.moveaxis(x, -3, -1) if channels_first else x
        batched = images.ndim == 4
        if not batched:
            images = images[None]
        if images.ndim != 4:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects images of rank 3 or 4, "
                             f"got shape {x.shape}.")
        out = fusion.run_layers(images, run, bool(training))
        if not batched:
            out = out[0]
        if channels_first:
            out = np.ascontiguousarray(np.moveaxis(out, -1, -3))
        for follower in run[1:]:
            follower._expect = out
        return out

    def forward(self, inputs, training=False):
        return self.call(inputs, training=training), None

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        if need_input_grad:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) passes no gradient to its input: "
                             "put image preprocessing layers before the layers being trained.")
        return None, []

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "data_format": self.data_format}


def check_choice(value, name, choices):
    if value not in choices:
        raise NotImplementedError(f"Unknown `{name}` {value}. Expected of one {tuple(choices)}.")
    return value


def symmetric_factor(factor, name, bounds=(-1.0, 1.0)):
    """Keras's factor rule: a number f means [-f, f] clamped to ``bounds``, a pair (lower, upper) sorted."""
    message = (f"The `{name}` argument should be a number (or a list of two numbers) in the range "
               f"[{bounds[0]}, {bounds[1]}]. Received: {name}={factor}")
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or factor[0] > bounds[1] or factor[1] < bounds[0]:
            raise ValueError(message)
        return tuple(sorted(float(f) for f in factor))
    if isinstance(factor, (int, float)) and not isinstance(factor, bool):
        if factor < bounds[0] or factor > bounds[1]:
            raise ValueError(message)
        factor = abs(float(factor))
        return (max(-factor, bounds[0]), factor)
    raise ValueError(message)
