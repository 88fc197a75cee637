"""Conv2D: 2-D convolution over NHWC images, kernels stored (kh, kw, in, out) as Keras does."""
import numpy as np

from tlkit.engine import activations
from tlkit.engine.layers.base_conv import BaseConv
from tlkit.engine.layers.bn_folding import folds_into
from tlkit.engine.layers.conv_epilogue import conv_with_epilogue, epilogue_step, finish
from tlkit.engine.layers.pooling import MaxPooling2D


def conv_kernels():
    """The numba kernels, imported on first use so ``import tlkit`` stays light."""
    from tlkit.engine.kernels import conv
    return conv


def epilogue_kernels():
    from tlkit.engine.kernels import epilogue
    return epilogue


def conv_nd_kernels():
    from tlkit.engine.kernels import conv_nd
    return conv_nd


class Conv2D(BaseConv):
    """``Conv2D(64, 3, padding="same", activation="relu")``.

    'same' padding is TF/Keras's: output = ceil(input / stride), the odd pixel padded at the
    bottom/right. Bias and ReLU are fused into the convolution's output pass. ``groups > 1``
    splits the channels into groups convolved separately (kernel (kh, kw, in // groups, out)).
    """

    rank = 2
    supports_logit_fusion = True
    accepts_output_buffer = True
    writes_channel_slice = True

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
                         use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
                         **kwargs)

    def _conv(self, x, out=None):
        kernels = conv_kernels()
        return kernels.conv2d_forward(
            x, self.kernel.value, None if self.bias is None else self.bias.value, self.strides, self.padding,
            self.dilation_rate, relu=self.activation == "relu", wino_filter=self._winograd_filter(kernels), out=out,
            packed=self._packed_pointwise(kernels))

    def _packed_pointwise(self, kernels):
        """A frozen 1x1 kernel and its bias packed for gemm_blocks once (kept as _winograd_filter keeps its
        transform; packing per call cost SqueezeNet's 512 -> 1000 classifier conv 0.11 ms a forward)."""
        if self.trainable or self.kernel_size != (1, 1) or not kernels.gemm_blocks.worth_it(*self.kernel.shape[2:]):
            self._packed_cache = None
            return None
        weights = [self.kernel] + ([] if self.bias is None else [self.bias])
        key = tuple((id(v.value), v.version) for v in weights)
        cached = getattr(self, "_packed_cache", None)
        if cached is None or cached[0] != key:
            packed = kernels.gemm_blocks.pack(self.kernel.value[0, 0], None if self.bias is None else self.bias.value)
            cached = self._packed_cache = (key, packed)
        return cached[1]

    def _winograd_filter(self, kernels):
        """A frozen 3x3 kernel's Winograd transform, computed once (optimizers update trainable kernels
        in place every step, so those are transformed per call inside the kernel instead). Large ones are
        not kept: the kernel transforms them block by block in cache (winograd_filters.cached_filter_wanted)."""
        if (self.trainable or self.kernel_size != (3, 3) or self.strides != (1, 1) or self.dilation_rate != (1, 1)
                or not kernels.winograd_cached_filter_wanted(*self.kernel.value.shape[2:])):
            self._wino_cache = None
            return None
        key = (id(self.kernel.value), self.kernel.version)
        cached = getattr(self, "_wino_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, kernels.winograd_transform_filter(self.kernel.value))
            self._wino_cache = cached
        return cached[1]

    def fuses_max_pool(self, input_shape, pool):
        """Whether ``call(x, pool=pool)`` computes this conv and the max pool in one pass, so the
        full-size conv output never exists (small windows; Winograd convs with a 2x2/2 pool)."""
        kernel_shape = self.kernel_size + (input_shape[-1], self.filters)
        return self.groups == 1 and self.activation in ("relu", "linear") and conv_kernels().fuses_max_pool(
            input_shape, kernel_shape, self.strides, self.dilation_rate, pool.pool_size, pool.strides, pool.padding)

    def fuses_with(self, input_shape, consumer):
        if folds_into(self, consumer):
            return "batch_norm"
        return "pool" if type(consumer) is MaxPooling2D and self.fuses_max_pool(input_shape, consumer) else None

    def fuses_epilogue(self, consumer, kinds_so_far):
        """After a folded BatchNormalization: whether ``consumer`` (a residual Add, a ReLU) joins the
        output pass (see conv_epilogue.py)."""
        return epilogue_step(consumer, kinds_so_far) if self.groups == 1 else None

    def _folded_conv(self, x, kernel, bias, residual, clip, out):
        """A folded kernel's convolution with the residual and clip: a 1x1 stride-1 conv as products
        with the epilogue tile by tile; others through conv2d_forward (ReLU in its output pass). A frozen
        fold (conv_epilogue.Fold) keeps each route's packing or Winograd filter and lets the folded
        kernel go (``kernel`` is then None), folding it again only for a route that reads it."""
        kept = getattr(self, "_folded_cache", None)
        if kept is not None and kernel is not None and kept.kernel is not kernel:
            kept = None  # a fold of this call only (trainable layers): nothing kept

        def folded_kernel():
            return kernel if kernel is not None else kept.kernel_again()

        shape = self.kernel.shape
        if self.groups > 1:
            y = conv_nd_kernels().conv_forward(x, folded_kernel(), bias, self.strides, self.padding,
                                               self.dilation_rate, self.groups)
            return finish(y, residual, clip)
        from tlkit.engine.kernels import gemm_blocks  # numba, loaded on first use

        def packing():  # the frozen fold's weights and bias packed for gemm_blocks
            return kept.form("packed", lambda k: gemm_blocks.pack(k.reshape(-1, shape[3]), bias))

        if self.kernel_size == (1, 1) and self.strides == (1, 1):
            low, high = clip if clip is not None else (None, None)
            if kept is not None and gemm_blocks.worth_it(*shape[2:]):
                return epilogue_kernels().pointwise_conv(x, None, bias, residual, low, high, out, packed=packing())
            return epilogue_kernels().pointwise_conv(x, folded_kernel().reshape(shape[2:]), bias, residual, low,
                                                     high, out)
        from tlkit.engine.kernels import packed_conv, stem_conv  # numba, loaded on first use
        if residual is None and stem_conv.applicable(shape, self.strides, self.dilation_rate):
            # a 3x3 conv over RGB (a stem): a direct kernel, its clip in the output pass
            y = stem_conv.folded_conv(x, folded_kernel(), bias, self.strides, self.padding, self.dilation_rate,
                                      clip, out)
            if y is not None:
                return y
        if kept is not None:  # a frozen fold: its packing is kept too
            y = packed_conv.folded_conv(x, tuple(shape), bias, self.strides, self.padding, self.dilation_rate,
                                        residual, clip, out, packed=packing)
            if y is not None:  # a strided 1x1 conv, or im2col patches through the packed weights
                return y
        kernels = conv_kernels()
        relu = residual is None and clip is not None and clip == (0.0, None)
        if (kept is not None and kernels.winograd.applicable(x.shape, shape, self.strides, self.dilation_rate)
                and not kernels.winograd.few_tiles(*self.compute_output_shape(x.shape)[:3])):
            # conv2d_forward's Winograd route, from the fold's kept filter alone
            from tlkit.engine.kernels.geometry import pads
            u = kept.form("winograd", kernels.winograd_transform_filter)
            x = np.ascontiguousarray(x, np.float32)
            top, left = pads(x.shape[1], 3, 1, self.padding)[0], pads(x.shape[2], 3, 1, self.padding)[0]
            y = kernels.winograd.conv3x3(x, None, u, bias, top, left, self.compute_output_shape(x.shape)[1:3], relu,
                                         out)
        else:
            y = kernels.conv2d_forward(x, folded_kernel(), bias, self.strides, self.padding, self.dilation_rate,
                                       relu=relu, out=out)
        return finish(y, residual, clip, clipped=relu)

    def call(self, inputs, training=False, out=None, pool=None, batch_norm=None, epilogue=()):
        """out: optional float32 array (or channel slice of one) to write the result into; the
        inference plan passes one to skip Concatenate copies and reuse memory.
        pool: a MaxPooling2D to apply to the result in the same pass; returns the pooled output
        (the inference plan passes one when it is this conv's only consumer and ``fuses_max_pool``).
        batch_norm: the BatchNormalization reading this output, folded into the kernel and bias when
        it uses its moving statistics; returns the normalized output.
        epilogue: with batch_norm, [(kind, layer, residual or None)] of the residual Add and ReLU
        after it, applied in the same pass (conv_epilogue.py); returns their output."""
        if batch_norm is not None:
            kernel = self.kernel.value
            return conv_with_epilogue(self, inputs, training, batch_norm, epilogue, out, kernel, self._bias_value(),
                                      kernel.shape, self._folded_conv)
        if pool is not None:
            if self.activation not in ("relu", "linear"):
                raise ValueError(f"Layer '{self.name}': only a ReLU or linear Conv2D fuses with a max pool, "
                                 f"not activation {self.activation!r}.")
            kernels = conv_kernels()
            return kernels.conv2d_maxpool_forward(
                inputs, self.kernel.value, None if self.bias is None else self.bias.value, self.strides,
                self.padding, relu=self.activation == "relu", pool_size=pool.pool_size, pool_strides=pool.strides,
                pool_padding=pool.padding, out=out, wino_filter=self._winograd_filter(kernels))
        if self.groups > 1:
            y = super().call(inputs)
            if out is not None:
                out[...] = y
                y = out
            return y
        y = self._conv(inputs, out)
        if self.activation not in ("relu", "linear"):
            if out is None:
                y = activations.apply(self.activation, y)
            else:
                y[...] = activations.apply(self.activation, y)
        return y

    def _convolve(self, x):
        if self.groups > 1:
            return conv_nd_kernels().conv_forward(x, self.kernel.value, self._bias_value(), self.strides,
                                                  self.padding, self.dilation_rate, self.groups)
        return self._conv(x)

    def _convolve_backward(self, x, dz, need_input, need_weights):
        if self.groups > 1:
            return conv_nd_kernels().conv_backward(x, dz, self.kernel.value, self.strides, self.padding,
                                                   self.dilation_rate, self.groups, need_input, need_weights)
        kernels = conv_kernels()
        dw = db = dx = None
        if need_weights:
            dw, db = kernels.conv2d_backward_weights(x, dz, self.kernel.shape, self.strides, self.padding,
                                                     self.dilation_rate)
        if need_input:
            dx = kernels.conv2d_backward_input(dz, self.kernel.value, x.shape, self.strides, self.padding,
                                               self.dilation_rate)
        return dx, dw, db
