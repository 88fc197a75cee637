"""``tlkit.models``: load_model, model_from_json, clone_model, Model, Sequential."""
import tlkit.augment.layers  # noqa: F401  (registers the preprocessing layers a model file may name)
from tlkit.engine.cloning import clone_model  # noqa: F401
from tlkit.engine.model import Model  # noqa: F401
from tlkit.engine.saving.config import model_from_json  # noqa: F401
from tlkit.engine.saving.errors import ModelFileError  # noqa: F401
from tlkit.engine.saving.model_files import load_model  # noqa: F401
from tlkit.engine.sequential import Sequential  # noqa: F401
