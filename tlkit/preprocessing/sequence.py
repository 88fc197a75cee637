"""``tlkit.preprocessing.sequence``: Keras's ``keras.preprocessing.sequence``."""
from tlkit.utils.sequences import pad_sequences  # noqa: F401

__all__ = ["pad_sequences"]
