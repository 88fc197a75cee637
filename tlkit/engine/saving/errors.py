"""The errors a damaged or hostile model or weight file raises: one family, one message shape.

``UnreadableFileError`` is the base every file reader's refusal derives from, so callers (the
CLI, the fuzzer) catch one class. ``ModelFileError`` comes from ``load_model`` and the model's
``load_weights``; ``WeightFileError`` from the weight-file readers in ``tlkit.zoo.weights`` and
the shared HDF5 layout reader. Either is built from a whole message, or from
(path, problem, fix), which reads "cannot read weight file 'f.h5': <problem>. <fix>."
"""

DEFAULT_FIX = (
    "Check that the file is complete (download or save it again) and that it is a Keras "
    ".h5 / .weights.h5 / .keras, a .safetensors or a PyTorch .pt/.pth weight file"
)


class UnreadableFileError(ValueError):
    """A file that is unreadable, damaged, or not what it claims to be; the message says which file,
    what is wrong and what to do."""

    kind = "model or weight"

    def __init__(self, path, problem="", fix=DEFAULT_FIX):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"cannot read {self.kind} file '{path}': {problem}. {fix}." if problem else str(path))


class WeightFileError(UnreadableFileError):
    """A weight file (or the weights inside a model file) is unreadable, damaged or hostile."""

    kind = "weight"


class ModelFileError(UnreadableFileError):
    """A file that is not a readable tlkit/Keras model or weight file."""

    kind = "model"
