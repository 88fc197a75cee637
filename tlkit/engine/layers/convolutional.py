"""Conv1D, Conv3D, Conv1DTranspose and Conv2DTranspose (Keras's arguments and kernel layouts:
Conv1D (k, in, out), Conv3D (kd, kh, kw, in, out), transposed (spatial..., out, in)); the work is
done by kernels/conv_nd.py on top of the fast 2-D convolution."""
from tlkit.engine.layers.base_conv import BaseConv


def conv_nd_kernels():
    from tlkit.engine.kernels import conv_nd
    return conv_nd


class _Conv(BaseConv):
    def _convolve(self, x):
        return conv_nd_kernels().conv_forward(x, self.kernel.value, self._bias_value(), self.strides, self.padding,
                                              self.dilation_rate, self.groups)

    def _convolve_backward(self, x, dz, need_input, need_weights):
        return conv_nd_kernels().conv_backward(x, dz, self.kernel.value, self.strides, self.padding,
                                               self.dilation_rate, self.groups, need_input, need_weights)


class Conv1D(_Conv):
    """``Conv1D(32, 5, padding="causal", dilation_rate=2)`` over (batch, steps, channels)."""

    rank = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
                         use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
                         **kwargs)


class Conv3D(_Conv):
    """``Conv3D(16, 3, padding="same")`` over (batch, depth, height, width, channels)."""

    rank = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
                         use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
                         **kwargs)


class _ConvTranspose(BaseConv):
    transposed = True

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, 1, activation,
                         use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
                         output_padding=output_padding, **kwargs)

    def _convolve(self, x):
        out_spatial = self._output_spatial(x.shape[1:-1])
        return conv_nd_kernels().conv_transpose_forward(x, self.kernel.value, self._bias_value(), out_spatial,
                                                        self.strides, self.padding, self.dilation_rate)

    def _convolve_backward(self, x, dz, need_input, need_weights):
        return conv_nd_kernels().conv_transpose_backward(x, dz, self.kernel.value, self.strides, self.padding,
                                                         self.dilation_rate, need_input, need_weights)


class Conv1DTranspose(_ConvTranspose):
    """``Conv1DTranspose(16, 3, strides=2, padding="same")``: steps * 2 out."""

    rank = 1


class Conv2DTranspose(_ConvTranspose):
    """``Conv2DTranspose(32, 3, strides=2, padding="same")``: the image doubled in size."""

    rank = 2
