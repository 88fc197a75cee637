"""``tlkit.utils``: seeding, progress bars, small helpers."""
import numpy as np

from tlkit.utils.plot_model import plot_model  # noqa: F401
from tlkit.utils.progbar import Progbar  # noqa: F401
from tlkit.utils.py_dataset import PyDataset, Sequence  # noqa: F401
from tlkit.utils.random import set_random_seed  # noqa: F401
from tlkit.utils.registration import (custom_object_scope, get_custom_objects,  # noqa: F401
                                      get_registered_objects, register_keras_serializable)
from tlkit.utils.sequences import pad_sequences, timeseries_dataset_from_array  # noqa: F401


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encode integer labels, as keras.utils.to_categorical."""
    y = np.asarray(y, dtype="int64").ravel()
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    out = np.zeros((len(y), num_classes), dtype=dtype)
    out[np.arange(len(y)), y] = 1
    return out
