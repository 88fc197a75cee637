"""``tlkit.activations``: Keras's activation functions, differentiable when user code calls them, and
``get`` (an activation's name from a name or one of these functions)."""
from tlkit.engine.activations import get  # noqa: F401
from tlkit.engine.ops.activation_ops import (elu, gelu, hard_sigmoid, hard_silu, hard_swish,  # noqa: F401
                                             leaky_relu, linear, log_softmax, mish, relu, relu6, selu, sigmoid,
                                             silu, softmax, softplus, swish, tanh)
