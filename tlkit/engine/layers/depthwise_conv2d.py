"""DepthwiseConv2D and SeparableConv2D (NHWC), with Keras's arguments, weight names and layouts:
depthwise kernel (kh, kw, in, depth_multiplier), pointwise kernel (1, 1, in * depth_multiplier, filters)."""
from functools import partial

from tlkit.engine import activations, initializers, regularizers
from tlkit.engine.kernels.bias_grad import bias_grad
from tlkit.engine.kernels.geometry import WindowTooLarge, conv_output_shape, window_arguments
from tlkit.engine import layer_calls
from tlkit.engine.layer import Layer
from tlkit.engine.layers.bn_folding import folds_into
from tlkit.engine.layers.conv_epilogue import conv_with_epilogue, epilogue_step, finish
from tlkit.engine.layers.padding import ZeroPadding2D


def depthwise_kernels():
    """The numba kernels, imported on first use so ``import tlkit`` stays light."""
    from tlkit.engine.kernels import depthwise
    return depthwise


def pointwise_kernels():
    from tlkit.engine.kernels import conv
    return conv


class DepthwiseConv2D(Layer):
    """``DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)``: each input channel convolved
    with its own ``depth_multiplier`` filters; output channel c * depth_multiplier + m.
    'same' padding is TF's (the odd pixel at the bottom/right)."""

    accepts_output_buffer = True

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError("tlkit works channels-last (NHWC): use data_format=None or 'channels_last'.")
        if not isinstance(depth_multiplier, int) or depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be a positive int, got {depth_multiplier!r}.")
        self.kernel_size, self.strides, self.padding, self.dilation_rate = window_arguments(
            kernel_size, strides, padding, dilation_rate)
        self.depth_multiplier, self.data_format = depth_multiplier, data_format
        self._set_kernel_arguments(activation, use_bias, depthwise_initializer, bias_initializer,
                                   depthwise_regularizer, bias_regularizer)

    def _check_input(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects (batch, height, width, channels) "
                             f"inputs with known channels; got shape {tuple(input_shape)}.")
        return input_shape[-1]

    def _add_depthwise_kernel(self, input_shape):
        """Checks the input, adds the (kh, kw, in, depth_multiplier) kernel; returns the input channels."""
        channels = self._check_input(input_shape)
        self.compute_output_shape(input_shape)
        self.depthwise_kernel = self.add_weight(self.kernel_size + (channels, self.depth_multiplier),
                                                self.kernel_initializer, "depthwise_kernel",
                                                regularizer=self.kernel_regularizer)
        return channels

    def build(self, input_shape):
        channels = self._add_depthwise_kernel(input_shape)
        self.bias = self.add_weight((channels * self.depth_multiplier,), self.bias_initializer, "bias",
                                    regularizer=self.bias_regularizer) if self.use_bias else None
        self.built = True

    def _spatial_output(self, input_shape):
        try:
            return conv_output_shape(tuple(input_shape[1:3]), self.kernel_size, self.strides, self.padding,
                                     self.dilation_rate)
        except WindowTooLarge:
            raise ValueError(f"Layer '{self.name}': a {self.kernel_size[0]}x{self.kernel_size[1]} kernel does not fit "
                             f"in an input of shape {tuple(input_shape)} with padding='valid'. Use padding='same' "
                             "or a larger input.") from None

    def compute_output_shape(self, input_shape):
        oh, ow = self._spatial_output(input_shape)
        return (input_shape[0], oh, ow, self._check_input(input_shape) * self.depth_multiplier)

    def _depthwise(self, x, kernel, bias, zero_pads=None):
        return depthwise_kernels().depthwise_forward(x, kernel, self.strides, self.padding, self.dilation_rate,
                                                     bias=bias, zero_pads=zero_pads)

    def absorbs_padding(self, producer):
        """Whether this conv can read the input of ``producer`` (the layer before it) with the zeros
        it adds taken in place (call's ``zero_padding``): a ZeroPadding2D before a 'valid' conv,
        MobileNetV2's downsampling blocks (the inference plan then skips the padded copy)."""
        return type(producer) is ZeroPadding2D and self.padding == "valid"

    def fuses_with(self, input_shape, consumer):
        return "batch_norm" if folds_into(self, consumer) else None

    def fuses_epilogue(self, consumer, kinds_so_far):
        """After a folded BatchNormalization: whether ``consumer`` (a residual Add, a ReLU6) joins the
        output pass (see conv_epilogue.py)."""
        return epilogue_step(consumer, kinds_so_far)

    def _folded_depthwise(self, x, kernel, bias, residual, clip, out, zero_pads=None):
        y = depthwise_kernels().depthwise_forward(x, kernel, self.strides, self.padding, self.dilation_rate,
                                                  bias=bias, clip=clip if residual is None else None, out=out,
                                                  zero_pads=zero_pads)
        return finish(y, residual, clip, clipped=residual is None)

    def call(self, inputs, training=False, out=None, batch_norm=None, epilogue=(), zero_padding=None):
        """out: optional C-contiguous float32 array to write the result into (the inference plan's
        recycled buffers). batch_norm: the BatchNormalization reading this output, folded in when it
        uses its moving statistics (the inference plan passes it); the result is then the normalized
        output. epilogue: with batch_norm, the ReLU6 / residual Add after it (conv_epilogue.py).
        zero_padding: the ZeroPadding2D whose input ``inputs`` is (see absorbs_padding)."""
        kernel, bias = self.depthwise_kernel.value, None if self.bias is None else self.bias.value
        zero_pads = None if zero_padding is None else zero_padding.padding
        if zero_pads is not None and batch_norm is not None and (
                not batch_norm.uses_moving_statistics(training) or any(k == "add" for k, _, _ in epilogue)):
            # the unfused route and the residual's shape check take the padded input itself
            inputs, zero_pads = zero_padding.call(inputs), None
        if batch_norm is not None:
            kh, kw, ch, m = kernel.shape
            return conv_with_epilogue(self, inputs, training, batch_norm, epilogue, out, kernel, bias,
                                      (kh, kw, ch * m), partial(self._folded_depthwise, zero_pads=zero_pads))
        y = activations.apply(self.activation, self._depthwise(inputs, kernel, bias, zero_pads))
        if out is not None:
            out[...] = y
            return out
        return y

    def forward(self, inputs, training=False):
        y = self.call(inputs)
        return y, (inputs, y)

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        x, y = cache
        dz = activations.backward(self.activation, y, dy)
        grads, kernels = [], depthwise_kernels()
        if need_weight_grad:
            grads.append((self.depthwise_kernel, kernels.depthwise_backward_kernel(
                x, dz, self.depthwise_kernel.shape, self.strides, self.padding, self.dilation_rate)))
            if self.bias is not None:
                grads.append((self.bias, bias_grad(dz.reshape(-1, dz.shape[-1]))))
        dx = kernels.depthwise_backward_input(dz, self.depthwise_kernel.value, x.shape, self.strides, self.padding,
                                              self.dilation_rate) if need_input_grad else None
        return dx, grads

    def get_config(self):
        return {
            **super().get_config(), "kernel_size": list(self.kernel_size), "strides": list(self.strides),
            "padding": self.padding, "depth_multiplier": self.depth_multiplier, "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate), "activation": layer_calls.activation_config(self),
            "use_bias": self.use_bias,
            "depthwise_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "depthwise_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        }


class SeparableConv2D(DepthwiseConv2D):
    """``SeparableConv2D(64, 3, padding="same")``: a depthwise convolution (no bias) then a 1x1
    convolution to ``filters`` channels with the bias and activation. Weights, in Keras's order:
    depthwise_kernel, pointwise_kernel, bias."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None, dilation_rate=(1, 1),
                 depth_multiplier=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation,
                         use_bias, depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer,
                         **kwargs)
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"Invalid value for argument `filters`. Expected a strictly positive value. "
                             f"Received filters={filters}.")
        self.filters = filters
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)

    def build(self, input_shape):
        channels = self._add_depthwise_kernel(input_shape)
        self.pointwise_kernel = self.add_weight((1, 1, channels * self.depth_multiplier, self.filters),
                                                self.pointwise_initializer, "pointwise_kernel",
                                                regularizer=self.pointwise_regularizer)
        self.bias = self.add_weight((self.filters,), self.bias_initializer, "bias",
                                    regularizer=self.bias_regularizer) if self.use_bias else None
        self.built = True

    def compute_output_shape(self, input_shape):
        oh, ow = self._spatial_output(input_shape)
        self._check_input(input_shape)
        return (input_shape[0], oh, ow, self.filters)

    def fuses_with(self, input_shape, consumer):
        return None

    def _pointwise(self, d):
        return pointwise_kernels().conv2d_forward(d, self.pointwise_kernel.value,
                                                  None if self.bias is None else self.bias.value)

    def call(self, inputs, training=False):
        d = self._depthwise(inputs, self.depthwise_kernel.value, None)
        return activations.apply(self.activation, self._pointwise(d))

    def forward(self, inputs, training=False):
        d = self._depthwise(inputs, self.depthwise_kernel.value, None)
        y = activations.apply(self.activation, self._pointwise(d))
        return y, (inputs, d, y)

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        x, d, y = cache
        dz = activations.backward(self.activation, y, dy)
        conv, depthwise, grads = pointwise_kernels(), depthwise_kernels(), []
        dd = conv.conv2d_backward_input(dz, self.pointwise_kernel.value, d.shape)
        if need_weight_grad:
            grads.append((self.depthwise_kernel, depthwise.depthwise_backward_kernel(
                x, dd, self.depthwise_kernel.shape, self.strides, self.padding, self.dilation_rate)))
            dw, db = conv.conv2d_backward_weights(d, dz, self.pointwise_kernel.shape)
            grads.append((self.pointwise_kernel, dw))
            if self.bias is not None:
                grads.append((self.bias, db))
        dx = depthwise.depthwise_backward_input(dd, self.depthwise_kernel.value, x.shape, self.strides,
                                                self.padding, self.dilation_rate) if need_input_grad else None
        return dx, grads

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, pointwise_initializer=initializers.serialize(self.pointwise_initializer),
                      pointwise_regularizer=regularizers.serialize(self.pointwise_regularizer))
        return config
