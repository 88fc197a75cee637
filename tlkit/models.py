"""``tlkit.models``: load_model, Model, Sequential."""
from tlkit.engine.model import Model  # noqa: F401
from tlkit.engine.saving.hdf5 import ModelFileError, load_model  # noqa: F401
from tlkit.engine.sequential import Sequential  # noqa: F401
