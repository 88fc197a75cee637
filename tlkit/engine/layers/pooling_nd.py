"""MaxPooling1D/3D and AveragePooling1D/3D (Keras's arguments; TF's 'same' padding: a padded cell
never wins a max and is not counted in a mean)."""
from tlkit.engine.layers.pooling import _Pooling


def pool_nd_kernels():
    from tlkit.engine.kernels import pool_nd
    return pool_nd


class _PoolingND(_Pooling):
    kind = "max"

    def call(self, inputs, training=False):
        return self.forward(inputs)[0]

    def forward(self, inputs, training=False):
        return pool_nd_kernels().pool_forward(inputs, self.kind, self.pool_size, self.strides, self.padding)

    def backward(self, cache, dy, need_input_grad=True, need_weight_grad=True):
        return pool_nd_kernels().pool_backward(dy, cache), []


class MaxPooling1D(_PoolingND):
    """``MaxPooling1D(pool_size=2)`` over (batch, steps, channels)."""

    rank = 1


class AveragePooling1D(_PoolingND):
    rank = 1
    kind = "avg"


class _Pooling3D(_PoolingND):
    rank = 3

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling3D(_Pooling3D):
    """``MaxPooling3D((2, 2, 2))`` over (batch, depth, height, width, channels)."""


class AveragePooling3D(_Pooling3D):
    kind = "avg"
