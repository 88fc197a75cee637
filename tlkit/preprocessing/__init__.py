"""``tlkit.preprocessing``: Keras 2's ``keras.preprocessing`` names (``from tlkit.preprocessing import image``)."""
from tlkit.preprocessing import image  # noqa: F401

__all__ = ["image"]
