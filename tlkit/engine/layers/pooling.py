"""MaxPooling2D and AveragePooling2D, and the arguments, shapes and config every pooling shares."""
from tlkit.engine.layer import Layer
from tlkit.engine.kernels.geometry import WindowTooLarge, ntuple, output_size, padding_mode


def pool_kernels():
    from tlkit.engine.kernels import pool
    return pool


class _Pooling(Layer):
    """Pooling over ``rank`` spatial axes (channels-last)."""

    rank = 2
    _spatial = {1: "steps", 2: "height, width", 3: "depth, height, width"}

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = ntuple(pool_size, self.rank, "pool_size")
        self.strides = ntuple(strides, self.rank, "strides") if strides is not None else self.pool_size
        self.padding = padding_mode(padding)
        if data_format not in (None, "channels_last"):
            raise ValueError("tlkit works channels-last: use data_format=None or 'channels_last'.")
        self.data_format = data_format

    def build(self, input_shape):
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expects {self.rank + 2}D input (batch, "
                             f"{self._spatial[self.rank]}, channels), got shape {tuple(input_shape)}.")
        self.compute_output_shape(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        try:
            spatial = tuple(output_size(n, k, s, self.padding)
                            for n, k, s in zip(input_shape[1:-1], self.pool_size, self.strides))
        except WindowTooLarge:
            raise ValueError(
                f"Layer '{self.name}' ({type(self).__name__}): pool size {self.pool_size} is larger than the "
                f"input {tuple(input_shape)} with padding='valid'. Use padding='same' or a larger input.") from None
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format}


class _Pooling2D(_Pooling):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling2D(_Pooling2D):
    accepts_output_buffer = True  # whole C-contiguous arrays only: no channel slices

    def call(self, inputs, training=False, out=None):
        """out: optional C-contiguous float32 array to write the result into (the inference plan
        passes recycled buffers)."""
        return pool_kernels().max_pool2d_forward(inputs, self.pool_size, self.strides, self.padding,
                                                 with_argmax=False, out=out)[0]

    def forward(self, inputs, training=False):
        y, argmax = pool_kernels().max_pool2d_forward(inputs, self.pool_size, self.strides, self.padding)
        return y, (argmax, inputs.shape)

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        argmax, shape = cache
        return pool_kernels().max_pool2d_backward(dy, argmax, shape), []


class AveragePooling2D(_Pooling2D):
    def call(self, inputs, training=False):
        return pool_kernels().avg_pool2d_forward(inputs, self.pool_size, self.strides, self.padding)

    def forward(self, inputs, training=False):
        return self.call(inputs), inputs.shape

    def backward(self, shape, dy, need_input_grad=True, need_weight_grad=True):
        return pool_kernels().avg_pool2d_backward(dy, shape, self.pool_size, self.strides, self.padding), []
