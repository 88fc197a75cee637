"""Weight files: read Keras / safetensors / PyTorch files safely, write tlkit's own, download.

The front door sniffs the format from the file's first bytes, never from its extension::

    from tlkit.zoo.weights import read_weight_file
    wf = read_weight_file("squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5")
    wf.format                    # "keras_h5"
    wf.layers["fire2/squeeze1x1"][0].shape   # (1, 1, 64, 16)
"""
import os
import struct
import zipfile

from tlkit.engine.saving.keras_h5_layout import HDF5_SIGNATURE
from tlkit.zoo.weights.download import VGG16_WEIGHTS, VGG16_WEIGHTS_NOTOP, DownloadError, get_file
from tlkit.zoo.weights.keras_h5 import read_keras_h5, write_keras_h5
from tlkit.zoo.weights.keras_v3 import read_keras_archive
from tlkit.zoo.weights.safetensors import read_safetensors, write_safetensors
from tlkit.zoo.weights.torch_pickle import read_torch_state_dict
from tlkit.zoo.weights.weight_file import WeightFile, WeightFileError

__all__ = [
    "WeightFile", "WeightFileError", "read_weight_file", "sniff_format", "read_keras_h5", "write_keras_h5",
    "read_keras_archive", "read_safetensors", "write_safetensors", "read_torch_state_dict", "get_file",
    "DownloadError", "VGG16_WEIGHTS", "VGG16_WEIGHTS_NOTOP",
]

READERS = {
    "keras_h5": read_keras_h5,  # also reads Keras 3 .weights.h5 (the layout is told apart inside)
    "keras_archive": read_keras_archive,
    "safetensors": read_safetensors,
    "torch": read_torch_state_dict,
}
FORMATS_HELP = "Keras .h5 / .weights.h5 / .keras, .safetensors, or a PyTorch .pt/.pth (torch.save, zip or legacy)"


def read_weight_file(path, format="auto"):
    """Read any supported weight file; ``format`` is "auto" or one of ``READERS``."""
    if format == "auto":
        format = sniff_format(path)
    if format not in READERS:
        raise ValueError(f"read_weight_file: unknown format {format!r}; use 'auto' or one of {sorted(READERS)}")
    return READERS[format](path)


def sniff_format(path):
    """"keras_h5", "keras_archive", "safetensors" or "torch", from the file's content."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise WeightFileError(path, "the file does not exist", "Check the path") from None
    except OSError as e:
        raise WeightFileError(path, f"it cannot be read ({e})", "Check the path and permissions") from e
    if head.startswith(HDF5_SIGNATURE):
        return "keras_h5"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise WeightFileError(path, f"it starts like a zip archive but is damaged ({e})") from e
        if "model.weights.h5" in names or "config.json" in names:
            return "keras_archive"
        if any(n.endswith("/data.pkl") for n in names):
            return "torch"
        raise WeightFileError(path, f"it is a zip archive of neither Keras nor PyTorch (members: {names[:6]})")
    # safetensors before pickles: its header length's first byte may well be 0x80, a pickle's first byte.
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= size - 8:
        return "safetensors"
    if head[:1] == b"\x80":
        return "torch"  # a pickle: PyTorch's legacy format (the torch reader checks its magic number)
    raise WeightFileError(path, f"its first bytes {head[:8]!r} match no supported format", f"Supported: {FORMATS_HELP}")
