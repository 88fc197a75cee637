"""Keras/TF padding arithmetic for convolutions and pooling windows.

'same': out = ceil(in / stride); the total padding is split with the odd pixel at the
bottom/right (TF's rule, which torch's symmetric padding does not reproduce).
'valid': no padding, out = floor((in - span) / stride) + 1 where span = (k - 1) * dilation + 1.

    >>> conv_output_shape((224, 224), (3, 3), (1, 1), "same", (1, 1))
    (224, 224)
    >>> same_padding(224, 3, 2, 1)   # out 112: pad_total 1 -> (top 0, bottom 1)
    (0, 1)
"""


def check_padding(padding):
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")


def output_size(size, kernel, stride, padding, dilation=1):
    """Output length along one axis."""
    check_padding(padding)
    if padding == "same":
        return -(-size // stride)
    span = (kernel - 1) * dilation + 1
    if size < span:
        raise ValueError(
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
    check_padding(padding)
    return same_padding(size, kernel, stride, dilation) if padding == "same" else (0, 0)


def conv_output_shape(in_hw, kernel_hw, strides, padding, dilation=(1, 1)):
    """(oh, ow) of a convolution or pooling window over an (h, w) input."""
    return tuple(output_size(n, k, s, padding, d) for n, k, s, d in zip(in_hw, kernel_hw, strides, dilation))
