"""Convolutions other than the plain 2-D one, built on conv.py's fast 2-D kernels (no second
im2col, Winograd or direct kernel): 1-D (with Keras's 'causal' padding), grouped, 3-D and
transposed convolutions, forward and both backwards. Channels-last, Keras's kernel layouts.

    y = conv_forward(x, w, b, strides, padding, dilation, groups)       # rank from x: 1-D, 2-D, 3-D
    dx, dw, db = conv_backward(x, dy, w, strides, padding, dilation, groups)
    y = conv_transpose_forward(x, w, b, out_spatial, strides, padding, dilation)
    dx, dw, db = conv_transpose_backward(x, dy, w, strides, padding, dilation)

How: a 1-D convolution is a 2-D one over an image of height 1 (a view, no copy); 'causal'
pads (k - 1) * dilation zeros before the sequence and runs 'valid'. Groups run one 2-D
convolution per group, each writing straight into its channel slice of the output. A 3-D
convolution sums, over the kernel's depth taps, one 2-D convolution of the input's depth slices
(depth folded into the batch). A transposed convolution is the input gradient of the forward
convolution it undoes, and its gradients are that convolution's forward and weight gradient.
"""
import numpy as np

from tlkit.engine.kernels import conv
from tlkit.engine.kernels.geometry import output_size, padding_mode, pads

__all__ = ["conv_forward", "conv_backward", "conv_transpose_forward", "conv_transpose_backward"]


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _channel_slices(total, groups):
    step = total // groups
    return [slice(g * step, (g + 1) * step) for g in range(groups)]


# ---------------------------------------------------------------------------------------------
# 2-D with groups: the building block of the others

def _conv2d(x, w, strides, padding, dilation, groups):
    """Grouped 2-D convolution without bias: (N, OH, OW, F)."""
    if groups == 1:
        return conv.conv2d_forward(x, w, None, strides, padding, dilation)
    n = x.shape[0]
    oh = output_size(x.shape[1], w.shape[0], strides[0], padding, dilation[0])
    ow = output_size(x.shape[2], w.shape[1], strides[1], padding, dilation[1])
    y = np.empty((n, oh, ow, w.shape[3]), np.float32)
    for cs, fs in zip(_channel_slices(x.shape[3], groups), _channel_slices(w.shape[3], groups)):
        conv.conv2d_forward(_f32(x[..., cs]), _f32(w[..., fs]), None, strides, padding, dilation, out=y[..., fs])
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


# From this many input channels on, a stride-1 1-D convolution runs as one product per kernel tap
# over the whole batch (no patch matrix); below it, the patch matrix's longer products win
# (scripts/bench_layers.py measures both against torch).
TAP_PRODUCTS_MIN_CHANNELS = 128


def _conv1d_taps(x, w, dilation):
    """'valid' stride-1 1-D convolution as k products: the batch's steps laid end to end, row r of
    the result is sum_j x_flat[r + j * dilation] @ w[j]; rows that straddle two sequences are dropped."""
    n, length, c = x.shape
    k, _, f = w.shape
    out_len = length - (k - 1) * dilation
    rows = n * length - (k - 1) * dilation
    flat = x.reshape(-1, c)
    z = np.empty((n * length, f), np.float32)
    np.dot(flat[:rows], w[0], out=z[:rows])
    part = np.empty((rows, f), np.float32)
    for j in range(1, k):
        np.dot(flat[j * dilation:j * dilation + rows], w[j], out=part)
        z[:rows] += part
    return np.ascontiguousarray(z.reshape(n, length, f)[:, :out_len])


def _conv1d(x, w, strides, padding, dilation, groups):
    if padding == "causal":
        x, _ = _causal_input(x, w.shape[0], dilation[0])
        padding = "valid"
    if strides == (1,) and groups == 1 and x.shape[2] >= TAP_PRODUCTS_MIN_CHANNELS:
        before, after = pads(x.shape[1], w.shape[0], 1, padding, dilation[0])
        if before or after:
            x = np.pad(x, ((0, 0), (before, after), (0, 0)))
        if x.shape[1] >= (w.shape[0] - 1) * dilation[0] + 1:
            return _conv1d_taps(x, w, dilation[0])
    return _conv2d(x[:, None], w[None], (1,) + strides, padding, (1,) + dilation, groups)[:, 0]


def _conv1d_backward(x, dy, w, strides, padding, dilation, groups, need_input, need_weights):
    before = 0
    if padding == "causal":
        x, before = _causal_input(x, w.shape[0], dilation[0])
        padding = "valid"
    dx, dw = _conv2d_backward(x[:, None], _f32(dy[:, None]), w[None], (1,) + strides, padding, (1,) + dilation,
                              groups, need_input, need_weights)
    return (None if dx is None else np.ascontiguousarray(dx[:, 0, before:])), (None if dw is None else dw[0])


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


def _conv3d(x, w, strides, padding, dilation, groups):
    xp, od, taps, _ = _depth_taps(x, w, strides[0], padding, dilation[0])
    n, _, h, wd, c = x.shape
    y = None
    for i, taken in enumerate(taps):
        part = _conv2d(_f32(xp[:, taken]).reshape(n * od, h, wd, c), _f32(w[i]), strides[1:], padding,
                       dilation[1:], groups)
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
    y = _BY_RANK[rank][0](x, w, *_window_args(rank, strides, dilation, padding, fn), groups)
    if b is not None:
        y += np.asarray(b, np.float32)
    return y


def conv_backward(x, dy, w, strides=None, padding="valid", dilation=None, groups=1, need_input=True,
                  need_weights=True):
    """(dx, dw, db) of conv_forward given dy = dL/dy (dx / dw None where not asked for)."""
    fn = "conv_backward"
    x, w, dy = _f32(x), _f32(w), _f32(dy)
    rank = _rank(x, w, groups, fn)
    dx, dw = _BY_RANK[rank][1](x, dy, w, *_window_args(rank, strides, dilation, padding, fn), groups, need_input,
                               need_weights)
    return dx, dw, dy.reshape(-1, dy.shape[-1]).sum(0, dtype=np.float32)


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
    db = dy.reshape(-1, dy.shape[-1]).sum(0, dtype=np.float32)
    if one_d:
        dx = None if dx is None else dx[:, 0]
        dw = None if dw is None else dw[0]
    return dx, dw, db
