"""Folding an inference-mode BatchNormalization into the convolution just before it.

BN(conv(x, k) + b) = conv(x, k * scale) + (b * scale + shift), per output channel, when BN uses its
moving statistics; the inference plan then runs one pass instead of two. A convolution layer
declares ``fuses_with`` -> "batch_norm" for a BatchNormalization consumer and calls
``fold_batch_norm`` in ``call`` (conv2d.py, depthwise_conv2d.py).
"""
import numpy as np

from tlkit.engine.layers.batch_normalization import BatchNormalization


def folds_into(conv, consumer):
    """Whether ``consumer`` is a channels-last BatchNormalization a linear ``conv`` can absorb."""
    return (type(consumer) is BatchNormalization and conv.activation == "linear"
            and consumer.axis in (-1, 3) and consumer.built)


def fold_batch_norm(batch_norm, kernel, bias):
    """(kernel, bias) of the convolution followed by ``batch_norm`` in inference mode; the kernel's
    last axis holds the output channels (a depthwise kernel is passed as (kh, kw, C*M))."""
    scale, shift = batch_norm.scale_and_shift()
    folded = kernel * scale
    new_bias = shift if bias is None else bias * scale + shift
    return folded.astype(np.float32), new_bias.astype(np.float32)
