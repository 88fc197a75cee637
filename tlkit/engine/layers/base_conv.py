"""What every convolution layer shares (Keras's base_conv): the arguments, the weights, the output
shape, the activation around the convolution and the config. Subclasses set ``rank`` and supply
``_convolve(x)`` and ``_convolve_backward(x, dz, need_input, need_weights) -> (dx, dw, db)``."""
from tlkit.engine import activations, initializers, regularizers
from tlkit.engine.kernels.geometry import (WindowTooLarge, ntuple, output_size, window_arguments,
                                           transposed_output_size)
from tlkit.engine import layer_calls
from tlkit.engine.layer import Layer

_SPATIAL = {1: "steps", 2: "height, width", 3: "depth, height, width"}


def check_channels_last(data_format):
    if data_format not in (None, "channels_last"):
        raise ValueError("tlkit works channels-last: use data_format=None or 'channels_last'.")


class BaseConv(Layer):
    rank = 2
    supports_logit_fusion = True  # backward takes dL/d(pre-activation) for a fused softmax/sigmoid loss
    transposed = False  # Conv*Transpose: kernel (spatial..., filters, in), output = the forward conv's input

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, output_padding=None,
                 **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"Invalid value for argument `filters`. Expected a strictly positive value. "
                             f"Received filters={filters}.")
        check_channels_last(data_format)
        if not isinstance(groups, int) or groups <= 0 or filters % groups:
            raise ValueError(f"{kind}: `groups` must be a positive int dividing filters={filters}, got {groups}.")
        self.filters, self.groups = filters, groups
        self.kernel_size, self.strides, self.padding, self.dilation_rate = window_arguments(
            kernel_size, strides, padding, dilation_rate, self.rank, causal=kind == "Conv1D")
        self.output_padding = None if output_padding is None else ntuple(output_padding, self.rank,
                                                                         "output_padding", allow_zero=True)
        if self.output_padding is not None and any(p >= s for p, s in zip(self.output_padding, self.strides)):
            raise ValueError(f"{kind}: output_padding {self.output_padding} must be smaller than the strides "
                             f"{self.strides} along each axis.")
        self.data_format = data_format
        self._set_kernel_arguments(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                                   bias_regularizer)

    # ----- weights and shapes -----
    def build(self, input_shape):
        kind = type(self).__name__
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"Input 0 of layer '{self.name}' ({kind}) is incompatible with the layer: expected "
                             f"ndim={self.rank + 2} (batch, {_SPATIAL[self.rank]}, channels), found "
                             f"ndim={len(input_shape)}. Full shape received: {tuple(input_shape)}")
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"Layer '{self.name}' ({kind}): the channel dimension of the inputs must be known.")
        if channels % self.groups:
            raise ValueError(f"Layer '{self.name}' ({kind}): the input's {channels} channels must be divisible "
                             f"by groups={self.groups}.")
        self.compute_output_shape(input_shape)
        io = (self.filters, channels) if self.transposed else (channels // self.groups, self.filters)
        self.kernel = self.add_weight(self.kernel_size + io, self.kernel_initializer, "kernel",
                                      regularizer=self.kernel_regularizer)
        self.bias = self.add_weight((self.filters,), self.bias_initializer, "bias",
                                    regularizer=self.bias_regularizer) if self.use_bias else None
        self.built = True

    def _output_spatial(self, spatial):
        if self.transposed:
            extra = self.output_padding or (None,) * self.rank
            return tuple(transposed_output_size(n, k, s, self.padding, p, d) for n, k, s, p, d in
                         zip(spatial, self.kernel_size, self.strides, extra, self.dilation_rate))
        try:
            return tuple(output_size(n, k, s, self.padding, d) for n, k, s, d in
                         zip(spatial, self.kernel_size, self.strides, self.dilation_rate))
        except WindowTooLarge:
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}): a {'x'.join(map(str, self.kernel_size))} kernel "
                f"(dilation {self.dilation_rate}) does not fit in an input of spatial shape {tuple(spatial)} with "
                "padding='valid'. Use padding='same', a smaller kernel or a larger input.") from None

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._output_spatial(input_shape[1:-1]) + (self.filters,)

    # ----- computation: the activation around the subclass's convolution -----
    def _bias_value(self):
        return None if self.bias is None else self.bias.value

    def call(self, inputs, training=False):
        return activations.apply(self.activation, self._convolve(inputs))

    def forward(self, inputs, training=False):
        if activations.keeps_input(self.activation):  # for a loss fused with the activation, or its backward
            z = self._convolve(inputs)
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
        dz = dy if pre_activation else activations.backward(self.activation, y, dy, z)
        dx, dw, db = self._convolve_backward(x, dz, need_input_grad, need_weight_grad)
        grads = []
        if need_weight_grad:
            grads.append((self.kernel, dw))
            if self.bias is not None:
                grads.append((self.bias, db))
        return dx, grads

    def get_config(self):
        config = {
            **super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
            "strides": list(self.strides), "padding": self.padding, "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate), "activation": layer_calls.activation_config(self),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        }
        if self.transposed:
            config["output_padding"] = None if self.output_padding is None else list(self.output_padding)
        else:
            config["groups"] = self.groups
        return config
