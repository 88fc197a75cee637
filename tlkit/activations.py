"""``tlkit.activations``."""
from tlkit.engine.activations import (elu, gelu, get, hard_sigmoid, hard_silu, hard_swish, leaky_relu,  # noqa: F401
                                      linear, log_softmax, mish, relu, relu6, selu, sigmoid, silu, softmax,
                                      softplus, swish, tanh)
