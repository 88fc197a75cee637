"""``tlkit.activations``."""
from tlkit.engine.activations import get, linear, relu, sigmoid, softmax, softplus, tanh  # noqa: F401
