"""Conv2D: 2-D convolution over NHWC images, kernels stored (kh, kw, in, out) as Keras does."""
from tlkit.engine import activations, initializers, regularizers
from tlkit.engine.kernels.geometry import WindowTooLarge, conv_output_shape, window_arguments
from tlkit.engine.layer import Layer
from tlkit.engine.layers.bn_folding import fold_batch_norm, folds_into
from tlkit.engine.layers.pooling import MaxPooling2D


def conv_kernels():
    """The numba kernels, imported on first use so ``import tlkit`` stays light."""
    from tlkit.engine.kernels import conv
    return conv


class Conv2D(Layer):
    """``Conv2D(64, 3, padding="same", activation="relu")``.

    'same' padding is TF/Keras's: output = ceil(input / stride), the odd pixel padded at the
    bottom/right. Bias and ReLU are fused into the convolution's output pass.
    """

    supports_logit_fusion = True
    accepts_output_buffer = True
    writes_channel_slice = True

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"Invalid value for argument `filters`. Expected a strictly positive value. Received filters={filters}.")
        if data_format not in (None, "channels_last"):
            raise ValueError("tlkit works channels-last (NHWC): use data_format=None or 'channels_last'.")
        if groups != 1:
            raise ValueError("Conv2D: groups != 1 is not supported by tlkit.")
        self.filters = filters
        self.kernel_size, self.strides, self.padding, self.dilation_rate = window_arguments(
            kernel_size, strides, padding, dilation_rate)
        self.data_format = data_format
        self._set_kernel_arguments(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                                   bias_regularizer)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"Input 0 of layer '{self.name}' (Conv2D) is incompatible with the layer: expected "
                             f"ndim=4 (batch, height, width, channels), found ndim={len(input_shape)}. "
                             f"Full shape received: {tuple(input_shape)}")
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"Layer '{self.name}' (Conv2D): the channel dimension of the inputs must be known.")
        self.compute_output_shape(input_shape)
        self.kernel = self.add_weight(self.kernel_size + (channels, self.filters), self.kernel_initializer,
                                      "kernel", regularizer=self.kernel_regularizer)
        self.bias = self.add_weight((self.filters,), self.bias_initializer, "bias",
                                    regularizer=self.bias_regularizer) if self.use_bias else None
        self.built = True

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        try:
            oh, ow = conv_output_shape((h, w), self.kernel_size, self.strides, self.padding, self.dilation_rate)
        except WindowTooLarge:
            raise ValueError(
                f"Layer '{self.name}' (Conv2D): a {self.kernel_size[0]}x{self.kernel_size[1]} kernel "
                f"(dilation {self.dilation_rate}) does not fit in an input of shape {tuple(input_shape)} "
                "with padding='valid'. Use padding='same', a smaller kernel or a larger input."
            ) from None
        return (n, oh, ow, self.filters)

    def _conv(self, x, out=None):
        kernels = conv_kernels()
        return kernels.conv2d_forward(
            x, self.kernel.value, None if self.bias is None else self.bias.value, self.strides, self.padding,
            self.dilation_rate, relu=self.activation == "relu", wino_filter=self._winograd_filter(kernels), out=out)

    def _winograd_filter(self, kernels):
        """A frozen 3x3 kernel's Winograd transform, computed once (optimizers update trainable kernels
        in place every step, so those are transformed per call inside the kernel instead)."""
        if self.trainable or self.kernel_size != (3, 3) or self.strides != (1, 1) or self.dilation_rate != (1, 1):
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
        return self.activation in ("relu", "linear") and conv_kernels().fuses_max_pool(
            input_shape, kernel_shape, self.strides, self.dilation_rate, pool.pool_size, pool.strides, pool.padding)

    def fuses_with(self, input_shape, consumer):
        if folds_into(self, consumer):
            return "batch_norm"
        return "pool" if type(consumer) is MaxPooling2D and self.fuses_max_pool(input_shape, consumer) else None

    def call(self, inputs, training=False, out=None, pool=None, batch_norm=None):
        """out: optional float32 array (or channel slice of one) to write the result into; the
        inference plan passes one to skip Concatenate copies and reuse memory.
        pool: a MaxPooling2D to apply to the result in the same pass; returns the pooled output
        (the inference plan passes one when it is this conv's only consumer and ``fuses_max_pool``).
        batch_norm: the BatchNormalization reading this output, folded into the kernel and bias when
        it uses its moving statistics; returns the normalized output."""
        if batch_norm is not None:
            if not batch_norm.uses_moving_statistics(training):
                return batch_norm(self.call(inputs, training), training=training)
            kernel, bias = fold_batch_norm(batch_norm, self.kernel.value,
                                           None if self.bias is None else self.bias.value)
            return conv_kernels().conv2d_forward(inputs, kernel, bias, self.strides, self.padding,
                                                 self.dilation_rate, out=out)
        if pool is not None:
            if self.activation not in ("relu", "linear"):
                raise ValueError(f"Layer '{self.name}': only a ReLU or linear Conv2D fuses with a max pool, "
                                 f"not activation {self.activation!r}.")
            kernels = conv_kernels()
            return kernels.conv2d_maxpool_forward(
                inputs, self.kernel.value, None if self.bias is None else self.bias.value, self.strides,
                self.padding, relu=self.activation == "relu", pool_size=pool.pool_size, pool_strides=pool.strides,
                pool_padding=pool.padding, out=out, wino_filter=self._winograd_filter(kernels))
        y = self._conv(inputs, out)
        if self.activation not in ("relu", "linear"):
            if out is None:
                y = activations.apply(self.activation, y)
            else:
                y[...] = activations.apply(self.activation, y)
        return y

    def forward(self, inputs, training=False):
        if self.activation in activations.FUSABLE:
            z = self._conv(inputs)
            return activations.apply(self.activation, z), (inputs, None, z)
        y = self.call(inputs)
        return y, (inputs, y, None)

    @staticmethod
    def logits_from_cache(cache):
        return cache[2]

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True, pre_activation=False):
        x, y, z = cache
        if y is None:
            y = activations.apply(self.activation, z)
        dz = dy if pre_activation else activations.backward(self.activation, y, dy)
        grads = []
        if need_weight_grad:
            dw, db = conv_kernels().conv2d_backward_weights(x, dz, self.kernel.shape, self.strides, self.padding,
                                                          self.dilation_rate)
            grads.append((self.kernel, dw))
            if self.bias is not None:
                grads.append((self.bias, db))
        dx = None
        if need_input_grad:
            dx = conv_kernels().conv2d_backward_input(dz, self.kernel.value, x.shape, self.strides, self.padding,
                                                    self.dilation_rate)
        return dx, grads

    def get_config(self):
        return {
            **super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
            "strides": list(self.strides), "padding": self.padding, "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate), "activation": self.activation, "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        }
