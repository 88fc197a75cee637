"""Convolutions other than the plain 2-D one, built on conv.py's fast 2-D kernels (no second
im2col, Winograd or direct kernel): 1-D (with Keras's 'causal' padding), grouped, 3-D and
transposed convolutions, forward and both backwards. Channels-last, Keras's kernel layouts.

    y = conv_forward(x, w, b, strides, padding, dilation, groups)       # rank from x: 1-D, 2-D, 3-D
    dx, dw, db = conv_backward(x, dy, w, strides, padding, dilation, groups)
    y = conv_transpose_forward(x, w, b, out_spatial, strides, padding, dilation)
    dx, dw, db = conv_transpose_backward(x, dy, w, strides, padding, dilation)

How: a stride-1 1-D convolution of 2-7 taps over enough channels (and its input gradient, the
same kind of convolution) runs by Winograd (winograd1d.py, padding read by index); any other is a 2-D one over an image of height 1 (a view, no copy), where
'causal' pads (k - 1) * dilation zeros before the sequence and runs 'valid'. The bias is added
by the convolution's own tiles. Groups run one 2-D
convolution per group, each writing straight into its channel slice of the output. A 3-D
convolution sums, over the kernel's depth taps, one 2-D convolution of the input's depth slices
(depth folded into the batch). A transposed convolution is the input gradient of the forward
convolution it undoes, and its gradients are that convolution's forward and weight gradient.
"""
import numpy as np

from tlkit.engine.kernels import conv, direct_conv, winograd1d
from tlkit.engine.kernels.bias_grad import bias_grad
from tlkit.engine.kernels.geometry import output_size, padding_mode, pads

__all__ = ["conv_forward", "conv_backward", "conv_transpose_forward", "conv_transpose_backward"]


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _channel_slices(total, groups):
    step = total // groups
    return [slice(g * step, (g + 1) * step) for g in range(groups)]


# ---------------------------------------------------------------------------------------------
# 2-D with groups: the building block of the others

def _conv2d(x, w, b, strides, padding, dilation, groups):
    """Grouped 2-D convolution + b (None: no bias): (N, OH, OW, F)."""
    if groups == 1:
        return conv.conv2d_forward(x, w, b, strides, padding, dilation)
    n = x.shape[0]
    oh = output_size(x.shape[1], w.shape[0], strides[0], padding, dilation[0])
    ow = output_size(x.shape[2], w.shape[1], strides[1], padding, dilation[1])
    y = np.empty((n, oh, ow, w.shape[3]), np.float32)
    for cs, fs in zip(_channel_slices(x.shape[3], groups), _channel_slices(w.shape[3], groups)):
        conv.conv2d_forward(_f32(x[..., cs]), _f32(w[..., fs]), None if b is None else _f32(b[fs]), strides, padding,
                            dilation, out=y[..., fs])
    return y


def _conv2d_backward(x, dy, w, strides, padding, dilation, groups, need_input=True, need_weights=True):
    """(dx, dw) of the grouped 2-D convolution (None where not asked for)."""
    if groups == 1:
        dx = conv.conv2d_backward_input(dy, w, x.shape, strides, padding, dilation) if need_input else None
        dw = conv.conv2d_backward_weights(x, dy, w.shape, strides, padding, dilation)[0] if need_weights else None
        return dx, dw
    dx = np.empty(x.shape, np.float32) if need_input else None
    dw = np.empty(w.shape, np.float32) if need_weights else None
    for cs, fs in zip(_channel_slices(x.shape[3], groups), _channel_slices(w.shape[3], groups)):
        dy_g, w_g = _f32(dy[..., fs]), _f32(w[..., fs])
        x_shape = x.shape[:3] + (w.shape[2],)
        if need_input:
            dx[..., cs] = conv.conv2d_backward_input(dy_g, w_g, x_shape, strides, padding, dilation)
        if need_weights:
            dw[..., fs] = conv.conv2d_backward_weights(_f32(x[..., cs]), dy_g, w_g.shape, strides, padding,
                                                       dilation)[0]
    return dx, dw


# ---------------------------------------------------------------------------------------------
# 1-D: height-1 images

def _causal_input(x, kernel, dilation):
    """x padded with (kernel - 1) * dilation zeros before the sequence (axis 1)."""
    before = pads(x.shape[1], kernel, 1, "causal", dilation)[0]
    return np.pad(x, ((0, 0), (before, 0), (0, 0))) if before else x, before


def _conv1d(x, w, b, strides, padding, dilation, groups):
    before, after = pads(x.shape[1], w.shape[0], strides[0], padding, dilation[0])
    out_len = x.shape[1] + before + after - (w.shape[0] - 1) * dilation[0]
    if strides == (1,) and groups == 1 and winograd1d.applicable(x.shape, w.shape, dilation[0], out_len):
        return winograd1d.conv1d(x, w, b, before, out_len, dilation[0])
    if padding == "causal" and groups == 1 and not direct_conv.applicable((1,) + w.shape, (1,) + dilation):
        # im2col reads the causal zeros by index (the small-window direct kernel needs them stored)
        out = output_size(x.shape[1], w.shape[0], strides[0], "causal", dilation[0])
        return conv.conv2d_forward_padded(x[:, None], w[None], b, (1,) + strides, (1,) + dilation, 0, before,
                                          (1, out))[:, 0]
    if padding == "causal":
        x, _ = _causal_input(x, w.shape[0], dilation[0])
        padding = "valid"
    return _conv2d(x[:, None], w[None], b, (1,) + strides, padding, (1,) + dilation, groups)[:, 0]


def _conv1d_backward(x, dy, w, strides, padding, dilation, groups, need_input, need_weights):
    r, d = w.shape[0], dilation[0]
    dx = None
    if need_input and strides == (1,) and groups == 1 and winograd1d.applicable(dy.shape, (r,) + w.shape[:0:-1], d,
                                                                                x.shape[1]):
        # A stride-1 conv's input gradient is another one: dy against the kernel reversed, in and out swapped.
        before = pads(x.shape[1], r, 1, padding, d)[0]
        dx = winograd1d.conv1d(dy, np.ascontiguousarray(w[::-1].transpose(0, 2, 1)), None, (r - 1) * d - before,
                               x.shape[1], d)
        if not need_weights:
            return dx, None
        need_input = False
    before = 0
    if padding == "causal":
        x, before = _causal_input(x, w.shape[0], dilation[0])
        padding = "valid"
    dx2d, dw = _conv2d_backward(x[:, None], _f32(dy[:, None]), w[None], (1,) + strides, padding, (1,) + dilation,
                                groups, need_input, need_weights)
    if dx2d is not None:
        dx = np.ascontiguousarray(dx2d[:, 0, before:])
    return dx, (None if dw is None else dw[0])


# ---------------------------------------------------------------------------------------------
# 3-D: a sum over depth taps of 2-D convolutions

def _depth_taps(x, w, stride, padding, dilation):
    """The depth-padded input, the output depth, and per tap the input's depth slice (strided)."""
    kd = w.shape[0]
    before, after = pads(x.shape[1], kd, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (before, after), (0, 0), (0, 0), (0, 0))) if before or after else x
    od = output_size(x.shape[1], kd, stride, padding, dilation)
    taps = [slice(i * dilation, i * dilation + (od - 1) * stride + 1, stride) for i in range(kd)]
    return xp, od, taps, before


def _conv3d(x, w, b, strides, padding, dilation, groups):
    xp, od, taps, _ = _depth_taps(x, w, strides[0], padding, dilation[0])
    n, _, h, wd, c = x.shape
    y = None
    for i, taken in enumerate(taps):
        part = _conv2d(_f32(xp[:, taken]).reshape(n * od, h, wd, c), _f32(w[i]), b if i == 0 else None,
                       strides[1:], padding, dilation[1:], groups)
        y = part if y is None else np.add(y, part, out=y)
    return y.reshape((n, od) + y.shape[1:])


def _conv3d_backward(x, dy, w, strides, padding, dilation, groups, need_input, need_weights):
    xp, od, taps, before = _depth_taps(x, w, strides[0], padding, dilation[0])
    n, d, h, wd, c = x.shape
    dy2 = _f32(dy.reshape((n * od,) + dy.shape[2:]))
    dxp = np.zeros(xp.shape, np.float32) if need_input else None
    dw = np.empty(w.shape, np.float32) if need_weights else None
    for i, taken in enumerate(taps):
        xs = _f32(xp[:, taken]).reshape(n * od, h, wd, c)
        dxs, dws = _conv2d_backward(xs, dy2, _f32(w[i]), strides[1:], padding, dilation[1:], groups, need_input,
                                    need_weights)
        if need_input:
            dxp[:, taken] += dxs.reshape(n, od, h, wd, c)
        if need_weights:
            dw[i] = dws
    dx = None if dxp is None else np.ascontiguousarray(dxp[:, before:before + d])
    return dx, dw


# ---------------------------------------------------------------------------------------------
# public entry points

_BY_RANK = {1: (_conv1d, _conv1d_backward), 2: (_conv2d, _conv2d_backward), 3: (_conv3d, _conv3d_backward)}


def _rank(x, w, groups, fn):
    rank = x.ndim - 2
    if rank not in _BY_RANK or w.ndim != rank + 2:
        raise ValueError(f"{fn}: expected x of rank 3, 4 or 5 (batch, spatial..., channels) and a kernel of the "
                         f"same rank, got x {x.shape} and kernel {w.shape}.")
    if x.shape[-1] != w.shape[-2] * groups or w.shape[-1] % groups:
        raise ValueError(f"{fn}: kernel {w.shape} with groups={groups} does not fit an input with {x.shape[-1]} "
                         "channels; the kernel must be (spatial..., channels // groups, filters).")
    return rank


def _window_args(rank, strides, dilation, padding, fn):
    padding = padding_mode(padding, fn=fn, causal=rank == 1)
    strides = (1,) * rank if strides is None else tuple(int(s) for s in strides)
    dilation = (1,) * rank if dilation is None else tuple(int(d) for d in dilation)
    return strides, padding, dilation


def conv_forward(x, w, b=None, strides=None, padding="valid", dilation=None, groups=1):
    """y = conv(x, w) + b for 1-D (N, L, C), 2-D (N, H, W, C) or 3-D (N, D, H, W, C) x; the kernel
    is (spatial..., C // groups, F). strides / dilation: one int per spatial axis (default 1)."""
    fn = "conv_forward"
    x, w = _f32(x), _f32(w)
    rank = _rank(x, w, groups, fn)
    b = None if b is None else _f32(b)
    # the bias goes in with the convolution, on each output tile while it is in cache
    return _BY_RANK[rank][0](x, w, b, *_window_args(rank, strides, dilation, padding, fn), groups)


def conv_backward(x, dy, w, strides=None, padding="valid", dilation=None, groups=1, need_input=True,
                  need_weights=True):
    """(dx, dw, db) of conv_forward given dy = dL/dy (dx / dw None where not asked for)."""
    fn = "conv_backward"
    x, w, dy = _f32(x), _f32(w), _f32(dy)
    rank = _rank(x, w, groups, fn)
    dx, dw = _BY_RANK[rank][1](x, dy, w, *_window_args(rank, strides, dilation, padding, fn), groups, need_input,
                               need_weights)
    return dx, dw, bias_grad(dy.reshape(-1, dy.shape[-1]))


def conv_transpose_forward(x, w, b, out_spatial, strides, padding, dilation):
    """Transposed convolution of a 1-D or 2-D channels-last x with a Keras kernel (spatial..., F, C):
    the input gradient of the convolution from an ``out_spatial`` input to x's size."""
    fn = "conv_transpose_forward"
    x, w = _f32(x), _f32(w)
    one_d = x.ndim == 3
    if one_d:
        x, w = x[:, None], w[None]
        out_spatial, strides, dilation = (1,) + tuple(out_spatial), (1,) + tuple(strides), (1,) + tuple(dilation)
    padding = padding_mode(padding, fn=fn)
    y = conv.conv2d_backward_input(x, w, (x.shape[0],) + tuple(out_spatial) + (w.shape[2],), strides, padding,
                                   dilation)
    if b is not None:
        y += np.asarray(b, np.float32)
    return y[:, 0] if one_d else y


def conv_transpose_backward(x, dy, w, strides, padding, dilation, need_input=True, need_weights=True):
    """(dx, dw, db) of conv_transpose_forward."""
    x, w, dy = _f32(x), _f32(w), _f32(dy)
    one_d = x.ndim == 3
    if one_d:
        x, w, dy = x[:, None], w[None], dy[:, None]
        strides, dilation = (1,) + tuple(strides), (1,) + tuple(dilation)
    dx = conv.conv2d_forward(dy, w, None, strides, padding, dilation) if need_input else None
    dw = conv.conv2d_backward_weights(dy, x, w.shape, strides, padding, dilation)[0] if need_weights else None
    db = bias_grad(dy.reshape(-1, dy.shape[-1]))
    if one_d:
        dx = None if dx is None else dx[:, 0]
        dw = None if dw is None else dw[0]
    return dx, dw, db
