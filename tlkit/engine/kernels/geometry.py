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


def ntuple(value, rank, what, fn=None, allow_zero=False):
    """``rank`` positive ints from an int or a ``rank``-sequence of ints (Keras's kernel_size,
    strides... for 1-D, 2-D and 3-D layers). allow_zero: 0 is accepted too (output_padding).
    fn: the function to name in the error (kernels); layers leave it out."""
    v = (value,) * rank if isinstance(value, (int, np.integer)) else tuple(value)
    low = 0 if allow_zero else 1
    if len(v) != rank or not all(isinstance(i, (int, np.integer)) and i >= low for i in v):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{_prefix(fn)}{what} must be a {kind} int or a tuple of {rank} {kind} ints, "
                         f"got {value!r}.")
    return tuple(int(i) for i in v)


def pair(value, what, fn=None):
    """(a, b) positive ints from an int or a 2-sequence of ints (Keras's kernel_size, strides...)."""
    return ntuple(value, 2, what, fn)


def padding_mode(padding, what="padding", fn=None, causal=False):
    """'valid' or 'same' (any case, as Keras accepts), or 'causal' where ``causal`` (Conv1D),
    else a ValueError naming ``what``."""
    mode = str(padding).lower()
    allowed = ("valid", "same", "causal") if causal else ("valid", "same")
    if mode not in allowed:
        names = " or ".join(repr(m) for m in allowed)
        raise ValueError(f"{_prefix(fn)}{what} must be {names}, got {padding!r}.")
    return mode


def window_arguments(kernel_size, strides, padding, dilation_rate, rank=2, causal=False):
    """A convolution layer's (kernel_size, strides, padding, dilation_rate), normalised and checked as
    Keras does (strides and dilation cannot both exceed 1); ``causal`` admits padding="causal" (Conv1D)."""
    kernel_size, strides = ntuple(kernel_size, rank, "kernel_size"), ntuple(strides, rank, "strides")
    padding, dilation_rate = padding_mode(padding, causal=causal), ntuple(dilation_rate, rank, "dilation_rate")
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError("`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                         f"Received: strides={strides} and dilation_rate={dilation_rate}")
    return kernel_size, strides, padding, dilation_rate


def output_size(size, kernel, stride, padding, dilation=1):
    """Output length along one axis (None for an unknown input length). 'causal' pads
    (kernel - 1) * dilation cells before the input only, so its length is 'same''s."""
    padding = padding_mode(padding, causal=True)
    if size is None:
        return None
    if padding in ("same", "causal"):
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
    """(before, after) padding along one axis for 'valid', 'same' or 'causal'."""
    padding = padding_mode(padding, causal=True)
    if padding == "causal":
        return (kernel - 1) * dilation, 0
    return same_padding(size, kernel, stride, dilation) if padding == "same" else (0, 0)


def transposed_output_size(size, kernel, stride, padding, output_padding=None, dilation=1):
    """Output length of a transposed convolution (Keras's rule): the input length of the forward
    convolution whose gradient it is. Without output_padding: 'same' in * stride, 'valid'
    in * stride + max(span - stride, 0); with it: (in - 1) * stride + span - 2 * pad + output_padding,
    pad = span // 2 for 'same', 0 for 'valid'."""
    padding = padding_mode(padding)
    if size is None:
        return None
    span = (kernel - 1) * dilation + 1
    if output_padding is None:
        return size * stride + (max(span - stride, 0) if padding == "valid" else 0)
    pad = span // 2 if padding == "same" else 0
    return (size - 1) * stride + span - 2 * pad + output_padding


def conv_output_shape(in_hw, kernel_hw, strides, padding, dilation=(1, 1)):
    """(oh, ow) of a convolution or pooling window over an (h, w) input (None where h or w is None)."""
    return tuple(output_size(n, k, s, padding, d) for n, k, s, d in zip(in_hw, kernel_hw, strides, dilation))
