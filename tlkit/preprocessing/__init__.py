"""``tlkit.preprocessing``: Keras's ``keras.preprocessing`` names (``from tlkit.preprocessing import image``)."""
from tlkit.augment.datasets import image_dataset_from_directory  # noqa: F401
from tlkit.preprocessing import image, sequence  # noqa: F401
from tlkit.utils.sequences import timeseries_dataset_from_array  # noqa: F401

__all__ = ["image", "sequence", "image_dataset_from_directory", "timeseries_dataset_from_array"]
