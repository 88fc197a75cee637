"""Window geometry of convolutions and poolings, in one place: the argument normalisers, TF's
padding and the output sizes. The layers use it for shapes (before any array exists), the
kernels for their loops; it imports no numba, so layers may import it at module level.

'same': out = ceil(in / stride); the total padding is split with the odd pixel at the
bottom/right (TF's rule, which torch's symmetric padding does not reproduce).
'valid': no padding, out = floor((in - span) / stride) + 1 where span = (k - 1) * dilation + 1.

    >>> conv_output_shape((224, 224), (3, 3), (1, 1), "same", (1, 1))
    (224, 224)
    >>> same_padding(224, 3, 2, 1)   # out 112: pad_total 1 -> (top 0, bottom 1)
    (0, 1)
"""
import numpy as np


class WindowTooLarge(ValueError):
    """A 'valid' window wider than its input; layers catch it to name themselves in the message."""


def _prefix(fn):
    return f"{fn}: " if fn else ""


def pair(value, what, fn=None):
    """(a, b) positive ints from an int or a 2-sequence of ints (Keras's kernel_size, strides...).
    fn: the function to name in the error (kernels); layers leave it out."""
    v = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(v) != 2 or not all(isinstance(i, (int, np.integer)) and i > 0 for i in v):
        raise ValueError(f"{_prefix(fn)}{what} must be a positive int or a pair of positive ints, got {value!r}.")
    return int(v[0]), int(v[1])


def padding_mode(padding, what="padding", fn=None):
    """'valid' or 'same' (any case, as Keras accepts), else a ValueError naming ``what``."""
    mode = str(padding).lower()
    if mode not in ("valid", "same"):
        raise ValueError(f"{_prefix(fn)}{what} must be 'valid' or 'same', got {padding!r}.")
    return mode


def window_arguments(kernel_size, strides, padding, dilation_rate):
    """A convolution layer's (kernel_size, strides, padding, dilation_rate), normalised and checked as
    Keras does (strides and dilation cannot both exceed 1)."""
    kernel_size, strides = pair(kernel_size, "kernel_size"), pair(strides, "strides")
    padding, dilation_rate = padding_mode(padding), pair(dilation_rate, "dilation_rate")
    if strides != (1, 1) and dilation_rate != (1, 1):
        raise ValueError("`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                         f"Received: strides={strides} and dilation_rate={dilation_rate}")
    return kernel_size, strides, padding, dilation_rate


def output_size(size, kernel, stride, padding, dilation=1):
    """Output length along one axis (None for an unknown input length)."""
    padding = padding_mode(padding)
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    span = (kernel - 1) * dilation + 1
    if size < span:
        raise WindowTooLarge(
            f"A window of span {span} (kernel {kernel}, dilation {dilation}) does not fit in an input of "
            f"length {size} with padding='valid'. Use padding='same' or a larger input.")
    return (size - span) // stride + 1


def same_padding(size, kernel, stride, dilation=1):
    """(before, after) padding of TF 'same' along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pads(size, kernel, stride, padding, dilation=1):
    """(before, after) padding along one axis for 'valid' or 'same'."""
    padding = padding_mode(padding)
    return same_padding(size, kernel, stride, dilation) if padding == "same" else (0, 0)


def conv_output_shape(in_hw, kernel_hw, strides, padding, dilation=(1, 1)):
    """(oh, ow) of a convolution or pooling window over an (h, w) input (None where h or w is None)."""
    return tuple(output_size(n, k, s, padding, d) for n, k, s, d in zip(in_hw, kernel_hw, strides, dilation))
