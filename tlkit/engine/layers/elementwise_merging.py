"""Multiply, Subtract, Average, Maximum, Minimum and Dot: merges of several inputs (Keras 3's
arguments; element-wise merges broadcast as Keras's do), over tlkit.ops."""
import functools

import numpy as np

from tlkit.engine import ops
from tlkit.engine.layers.merging import _check_list, _Merge


def broadcast_shape(layer, shapes):
    """The element-wise result shape of inputs of ``shapes`` (None: unknown), or a clear error."""
    ndim = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(1,) * (ndim - len(s)) + tuple(s) for s in shapes]):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}): inputs of shapes "
                             f"{[tuple(s) for s in shapes]} cannot be combined element-wise.")
        out.append(known.pop() if known else (None if None in dims else 1))
    return tuple(out)


class _ElementwiseMerge(_Merge):
    op = None

    def compute_output_shape(self, input_shape):
        _check_list(self, input_shape)
        return broadcast_shape(self, input_shape)

    def call(self, inputs, training=False):
        return functools.reduce(type(self).op, inputs)


class Multiply(_ElementwiseMerge):
    """``Multiply()([a, b, ...])``: element-wise product."""

    op = staticmethod(ops.multiply)


class Maximum(_ElementwiseMerge):
    op = staticmethod(ops.maximum)


class Minimum(_ElementwiseMerge):
    op = staticmethod(ops.minimum)


class Average(_ElementwiseMerge):
    def call(self, inputs, training=False):
        return ops.divide(functools.reduce(ops.add, inputs), float(len(inputs)))


class Subtract(_ElementwiseMerge):
    """``Subtract()([a, b])``: a - b (exactly two inputs)."""

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) != 2:
            raise ValueError("A `Subtract` layer should be called on exactly 2 inputs. "
                             f"Received: input_shape={input_shape}")
        return broadcast_shape(self, input_shape)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        self.built = True

    def call(self, inputs, training=False):
        return ops.subtract(inputs[0], inputs[1])


class Dot(_Merge):
    """``Dot(axes=1, normalize=False)([a, b])``: per-sample dot products along ``axes`` (an int or one
    axis per input, counted with the batch axis); normalize=True gives cosine similarities."""

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axes, (int, np.integer)):
            if not isinstance(axes, (list, tuple)) or len(axes) != 2:
                raise ValueError(f"Invalid format for argument `axes`: expected an int or a list of 2 ints. "
                                 f"Received: axes={axes}")
            axes = [int(a) for a in axes]
        self.axes = axes if isinstance(axes, list) else int(axes)
        self.normalize = bool(normalize)

    def _pair(self, shapes):
        axes = [self.axes] * 2 if isinstance(self.axes, int) else self.axes
        return [a % len(s) for a, s in zip(axes, shapes)]

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) != 2:
            raise ValueError(f"A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={input_shape}")
        a, b = (tuple(s) for s in input_shape)
        ia, ib = self._pair([a, b])
        if 0 in (ia, ib) or (a[ia] is not None and b[ib] is not None and a[ia] != b[ib]):
            raise ValueError(f"Layer '{self.name}' (Dot): cannot take the dot product of shapes {a} and {b} along "
                             f"axes {(ia, ib)} (sizes must match; the batch axis cannot be contracted).")
        rest = a[1:ia] + a[ia + 1:] + b[1:ib] + b[ib + 1:]
        return (a[0],) + (rest or (1,))

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        self.built = True

    def call(self, inputs, training=False):
        x, y = inputs
        ia, ib = self._pair([np.shape(x), np.shape(y)])
        if self.normalize:
            x, y = ops.normalize(x, axis=ia), ops.normalize(y, axis=ib)
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        batch, shared = next(letters), next(letters)
        sx = [batch] + [shared if i == ia else next(letters) for i in range(1, np.ndim(x))]
        sy = [batch] + [shared if i == ib else next(letters) for i in range(1, np.ndim(y))]
        out = [batch] + [c for c in sx[1:] + sy[1:] if c != shared]
        z = ops.einsum(f"{''.join(sx)},{''.join(sy)}->{''.join(out)}", x, y)
        return ops.expand_dims(z, -1) if len(out) == 1 else z

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


# Keras's functional forms: ``average([a, b])`` is ``Average(**kwargs)([a, b])``, and so on.
def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def dot(inputs, axes, normalize=False, **kwargs):
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
