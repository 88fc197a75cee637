"""A convolution at inference together with the layers that follow it alone: its BatchNormalization
folded into the kernel and bias (bn_folding.py), then at most one residual Add and at most one
ReLU / ReLU6 / Activation('relu'), applied to the output while it is written, so none of them
makes a pass or an array of its own (MobileNetV2's and EfficientNet's conv -> BN -> ReLU6,
ResNet50's conv -> BN -> Add -> ReLU).

The inference plan builds the chain (``fuses_epilogue`` on Conv2D and DepthwiseConv2D, asked one
consumer at a time) and calls the convolution with ``batch_norm=bn, epilogue=[(kind, layer,
residual array or None), ...]``; ``conv_with_epilogue`` then computes what the layers would have.
"""
import numpy as np

from tlkit.engine.layers.activation import Activation
from tlkit.engine.layers.bn_folding import fold_batch_norm
from tlkit.engine.layers.merging import Add
from tlkit.engine.layers.relu import ReLU


def clip_bounds(layer):
    """(low, high) of an activation layer that is a clip (None: no bound), or None if it is not one."""
    if type(layer) is ReLU and layer.negative_slope == 0.0 and layer.threshold == 0.0:
        return 0.0, layer.max_value
    if type(layer) is Activation and layer.activation == "relu":
        return 0.0, None
    return None


def epilogue_step(consumer, kinds_so_far):
    """The kind of step ``consumer`` adds to an epilogue that already has ``kinds_so_far``: a residual
    "add" (first, of two inputs) then a "clip"; None when it cannot join."""
    if type(consumer) is Add and not kinds_so_far:
        return "add"
    if clip_bounds(consumer) is not None and "clip" not in kinds_so_far:
        return "clip"
    return None


class Fold:
    """A frozen conv's weights with its BatchNormalization folded in, kept between calls (``key``: the
    weights' identities and versions), and the forms the conv's routes derive from them (gemm_blocks
    packings, Winograd filters), by name. Once a route has derived its form the folded kernel is let go:
    the forward reads only the forms, so the weights are held twice (the layers' own, the forms), not
    three times. A route that needs the kernel itself folds it again (``kernel_again``) and it is kept
    from then on. The layers' own weights are never touched: get_weights, set_weights and training see them."""

    def __init__(self, key, kernel, bias, refold):
        self.key, self.kernel, self.bias = key, kernel, bias
        self.forms = {}
        self._refold = refold  # () -> the folded kernel again, from the layers' unchanged weights
        self._keep_kernel = False

    def kernel_again(self):
        """The folded kernel, folded again if it was let go; kept from now on."""
        self._keep_kernel = True
        if self.kernel is None:
            self.kernel = self._refold()
        return self.kernel

    def form(self, name, derive):
        """The form ``name``, ``derive(folded kernel)`` on first use; the kernel is then let go (unless a
        route needs it)."""
        got = self.forms.get(name)
        if got is None:
            kernel = self.kernel if self.kernel is not None else self._refold()
            got = self.forms[name] = derive(kernel)
            if not self._keep_kernel:
                self.kernel = None
        return got


def folded_weights(conv, kernel, bias, batch_norm, flat_shape, kernel_optional=False):
    """(kernel, bias) with ``batch_norm`` folded in. Kept between calls while both layers are frozen
    (conv._folded_cache, a Fold), keyed on the weights' identities and versions: assign/set_weights, optimizer
    steps and BN's moving statistics bump them (a trainable weight, e.g. in a gradient check, is never kept).
    ``kernel_optional``: the kernel may come back None, when the kept Fold has let it go (the
    caller's route then reads the Fold's forms); otherwise it is folded again if need be."""
    frozen = not conv.trainable and not batch_norm.trainable
    weights = conv._own_weights + batch_norm._own_weights  # (not .weights: that property walks sublayers)
    key = (id(batch_norm), *(id(v.value) for v in weights), *(v.version for v in weights))
    cached = getattr(conv, "_folded_cache", None)
    if frozen and cached is not None and cached.key == key:
        return (cached.kernel if kernel_optional else cached.kernel_again()), cached.bias

    def fold():
        folded, new_bias = fold_batch_norm(batch_norm, kernel.reshape(flat_shape), bias)
        return folded.reshape(kernel.shape), new_bias

    folded, new_bias = fold()
    conv._folded_cache = Fold(key, folded, new_bias, lambda: fold()[0]) if frozen else None
    return folded, new_bias


def _unfused(conv, x, training, batch_norm, epilogue):
    """The layers one after another: a BatchNormalization computing batch statistics cannot fold."""
    y = batch_norm(conv.call(x, training), training=training)
    for kind, layer, residual in epilogue:
        y = layer([y, residual], training=training) if kind == "add" else layer(y, training=training)
    return y


def conv_with_epilogue(conv, x, training, batch_norm, epilogue, out, kernel, bias, flat_shape, convolve):
    """The output of conv -> batch_norm -> epilogue steps. kernel, bias: the conv's weights (the
    kernel seen as ``flat_shape``, output channels last, for folding); ``convolve(x, kernel, bias,
    residual, clip, out)``: the layer's own convolution plus the residual (an array of the output's
    shape, or None) and the clip ((low, high), or None); its kernel is None when the layer's kept Fold
    has let it go (folded_weights)."""
    if not batch_norm.uses_moving_statistics(training):
        y = _unfused(conv, x, training, batch_norm, epilogue)
        if out is not None:
            out[...] = y
            return out
        return y
    kernel, bias = folded_weights(conv, kernel, bias, batch_norm, flat_shape, kernel_optional=True)
    residual = next((r for kind, _, r in epilogue if kind == "add"), None)
    clip = next((clip_bounds(layer) for kind, layer, _ in epilogue if kind == "clip"), None)
    if residual is not None:
        residual = np.asarray(residual, np.float32)
        expected = conv.compute_output_shape(x.shape)
        if residual.shape != tuple(expected):
            raise ValueError(f"Layer '{epilogue[0][1].name}' (Add): inputs must have the same shape. "
                             f"Received: {tuple(expected)} and {tuple(residual.shape)}")
    whole = out is None or out.flags.c_contiguous
    y = convolve(x, kernel, bias, residual, clip, out if whole else None)
    if out is not None and not whole:
        out[...] = y
        return out
    return y


def finish(y, residual, clip, clipped=False):
    """y + residual, clipped, in place on C-contiguous y, for a convolution that did not apply them
    itself (``clipped``: it already applied the clip, with no residual). Returns y."""
    if residual is None and (clip is None or clipped):
        return y
    from tlkit.engine.kernels.epilogue import add_residual_clip  # numba, loaded on first use

    low, high = clip if clip is not None else (None, None)
    add_residual_clip(y.reshape(-1, y.shape[-1]), None if residual is None else residual.reshape(-1, y.shape[-1]),
                      low, high)
    return y
