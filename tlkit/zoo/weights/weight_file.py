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

import numpy as np

DEFAULT_FIX = (
    "Check that the file is complete (download or save it again) and that it is a Keras "
    ".h5 / .weights.h5 / .keras, a .safetensors or a PyTorch .pt/.pth weight file"
)


class WeightFileError(ValueError):
    """A weight file is unreadable, damaged, or not what it claims to be.

    The message says which file, what is wrong and what to do.
    """

    def __init__(self, path, problem="", fix=DEFAULT_FIX):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"cannot read weight file '{path}': {problem}. {fix}." if problem else str(path))


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


def standardize_array(array, float32=True):
    """Native byte order, C-contiguous; floating types become float32 when ``float32``."""
    array = np.asarray(array)
    dtype = np.float32 if float32 and array.dtype.kind == "f" else array.dtype.newbyteorder("=")
    return np.asarray(array, dtype=dtype, order="C")  # unlike ascontiguousarray, keeps 0-d arrays 0-d


def bfloat16_to_float32(raw_uint16):
    """bfloat16 is the top half of a float32: shift the 16 stored bits up."""
    return (np.asarray(raw_uint16, dtype=np.uint32) << 16).view(np.float32)
