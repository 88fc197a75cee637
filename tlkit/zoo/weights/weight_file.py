"""What every weight-file reader returns (``WeightFile``) and raises (``WeightFileError``).

Keras formats group weights by layer; safetensors and PyTorch files are flat name -> tensor
tables::

    wf = read_weight_file("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    wf.format                      # "keras_h5"
    kernel, bias = wf.layers["block1_conv1"]        # (3, 3, 3, 64), (64,) float32
    wf = read_weight_file("vgg16.pth")
    wf.tensors["features.0.weight"].shape           # (64, 3, 3, 3)
"""
from dataclasses import dataclass, field

# The error family and the array helpers live in the engine (its HDF5 reader uses them); the zoo's
# readers take them from here.
from tlkit.engine.saving.errors import DEFAULT_FIX, UnreadableFileError, WeightFileError
from tlkit.engine.saving.keras_h5_layout import bfloat16_to_float32, standardize_array

__all__ = ["DEFAULT_FIX", "MAX_DIMS", "UnreadableFileError", "WeightFile", "WeightFileError", "bfloat16_to_float32",
           "shape_problem", "standardize_array"]


# numpy 1 allows 32 dimensions, numpy 2 allows 64; no weight has more than a handful.
MAX_DIMS = 32


def shape_problem(shape, itemsize):
    """Why numpy could not make an array of ``shape`` (a tuple of non-negative ints), or None: too
    many dimensions, or a size (zero dimensions left out, as numpy counts it) past the address space."""
    if len(shape) > MAX_DIMS:
        return f"has {len(shape)} dimensions (at most {MAX_DIMS} are supported)"
    nonzero = 1
    for n in shape:
        nonzero *= max(n, 1)
    if nonzero * itemsize >= 2**63:
        return f"has shape {list(shape)!r:.100}, too large for any array even if empty"
    return None


@dataclass
class WeightFile:
    """The arrays of one weight file, in file order.

    ``format``: "keras_h5" (Keras 1/2 layout, also tlkit's own files), "keras_weights_h5"
    (Keras 3 ``.weights.h5``), "keras_archive" (``.keras`` zip), "safetensors" or "torch".
    ``layers`` / ``weight_names``: Keras formats, layer name -> arrays / their names in the file.
    ``tensors``: flat formats, tensor name -> array. Floating arrays are float32 unless a
    reader was asked to keep dtypes; integer arrays (counters) keep their integer dtype.
    ``attrs``: file-level attributes (keras_version, backend, safetensors ``__metadata__``...).
    ``metadata``: the ``tlkit_metadata`` dict when tlkit wrote the file, else None.
    """

    path: str
    format: str
    layers: dict = field(default_factory=dict)
    weight_names: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    metadata: dict | None = None

    def __repr__(self):
        count = sum(len(v) for v in self.layers.values()) + len(self.tensors)
        return f"WeightFile({self.path!r}, format={self.format!r}, arrays={count})"

