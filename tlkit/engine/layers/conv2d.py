"""Conv2D: 2-D convolution over NHWC images, kernels stored (kh, kw, in, out) as Keras does."""
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
        with the epilogue tile by tile; others through conv2d_forward (ReLU in its output pass)."""
        if self.groups > 1:
            y = conv_nd_kernels().conv_forward(x, kernel, bias, self.strides, self.padding, self.dilation_rate,
                                               self.groups)
            return finish(y, residual, clip)
        if self.kernel_size == (1, 1) and self.strides == (1, 1):
            low, high = clip if clip is not None else (None, None)
            return epilogue_kernels().pointwise_conv(x, kernel.reshape(kernel.shape[2:]), bias, residual, low, high,
                                                     out)
        if residual is None:  # a 3x3 conv over RGB (a stem): a direct kernel, its clip in the output pass
            from tlkit.engine.kernels import stem_conv  # numba, loaded on first use
            y = stem_conv.folded_conv(x, kernel, bias, self.strides, self.padding, self.dilation_rate, clip, out)
            if y is not None:
                return y
        kept = getattr(self, "_folded_cache", None)
        if kept is not None and kept[1] is kernel:  # a frozen fold, kept between calls: so is its packing
            from tlkit.engine.kernels import packed_conv  # numba, loaded on first use
            y = packed_conv.folded_conv(x, kernel, bias, self.strides, self.padding, self.dilation_rate, residual,
                                        clip, out)
            if y is not None:  # a strided 1x1 conv, or im2col patches through the packed weights
                return y
        kernels = conv_kernels()
        wino = None
        if (self.kernel_size == (3, 3) and self.strides == (1, 1) and self.dilation_rate == (1, 1)
                and not kernels.winograd.few_tiles(*self.compute_output_shape(x.shape)[:3])):
            # the folded kernel stays the same array until a weight changes (conv_epilogue.folded_weights)
            cached = getattr(self, "_folded_wino", None)
            if cached is None or cached[0] is not kernel:
                cached = self._folded_wino = (kernel, kernels.winograd_transform_filter(kernel))
            wino = cached[1]
        relu = residual is None and clip is not None and clip == (0.0, None)
        y = kernels.conv2d_forward(x, kernel, bias, self.strides, self.padding, self.dilation_rate, relu=relu,
                                   wino_filter=wino, out=out)
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
