"""Names and shapes as the messages and defaults show them."""
import re


def snake_case(name):
    """Keras's to_snake_case for default names: "SparseTopKCategoricalAccuracy" ->
    "sparse_top_k_categorical_accuracy", "AUC" -> "auc", "Conv2D" -> "conv2d"."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower().replace("2_d", "2d").replace("1_d", "1d")


def format_shape(shape):
    """A shape as Python prints a tuple: (None, 28, 28, 1), and (None,) for one dimension."""
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
