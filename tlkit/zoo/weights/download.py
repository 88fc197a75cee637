"""Get a published weight file once, keep it in the cache, check it every time.

The cache folder is ``$TLKIT_HOME/models`` (``TLKIT_HOME`` defaults to ``~/.tlkit``)::

    path = get_file(*VGG16_WEIGHTS_NOTOP)   # downloads 58 MB the first time, then reuses it
    path = get_file("mine.h5", "https://example.org/mine.h5", md5_hash="...", cache_dir="/data/w")

A download goes to a temporary file next to its final place and is kept only when complete
and matching ``md5_hash``: a dropped connection or a corrupt file never poisons the cache.
"""
import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from typing import NamedTuple

from tlkit.utils.io import atomic_path
from tlkit.utils.progbar import Progbar, progress_enabled

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60


class PublishedWeights(NamedTuple):
    fname: str
    origin: str
    md5_hash: str


_KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications"
VGG16_WEIGHTS = PublishedWeights(
    "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    f"{_KERAS_APPLICATIONS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    "64373286793e3c8b2b4e3219cbf3544b",
)
VGG16_WEIGHTS_NOTOP = PublishedWeights(
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    f"{_KERAS_APPLICATIONS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "6d6bbae143d832006294945121d1f1fc",
)


class DownloadError(OSError):
    """A weight file could not be downloaded or failed its checksum; the message says what to do."""


def cache_folder():
    """``$TLKIT_HOME/models``, ``~/.tlkit/models`` by default."""
    home = os.environ.get("TLKIT_HOME") or os.path.join(os.path.expanduser("~"), ".tlkit")
    return os.path.join(home, "models")


def get_file(fname, origin, md5_hash=None, cache_dir=None, progress=True):
    """Return the local path of ``fname``, downloading it from ``origin`` if not cached yet.

    A cached file is used as is when it matches ``md5_hash`` (or when no hash is given);
    a cached file with the wrong checksum is downloaded again.
    """
    folder = os.fspath(cache_dir) if cache_dir is not None else cache_folder()
    path = os.path.join(folder, fname)
    if os.path.isfile(path) and (md5_hash is None or file_md5(path) == md5_hash.lower()):
        return path
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the cache folder {folder} ({e}); set TLKIT_HOME to a writable folder") from e
    try:
        with atomic_path(path) as tmp:
            _download(origin, tmp, progress)
            if md5_hash is not None and file_md5(tmp) != md5_hash.lower():
                raise DownloadError(
                    f"the file downloaded from {origin} has md5 {file_md5(tmp)}, expected {md5_hash}; "
                    f"it was not kept. Try again later, or put a good copy at {path}"
                )
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, socket.timeout, ValueError) as e:
        if isinstance(e, urllib.error.HTTPError):
            reason = f"HTTP {e.code} {e.reason}"
        else:
            reason = getattr(e, "reason", None) or e
        raise DownloadError(
            f"could not download {fname} from {origin} ({reason}). If this machine is offline, download it "
            f"elsewhere and put it at {path}"
            + (f" (md5 {md5_hash})" if md5_hash else "")
            + ", or convert weights you have with `tlkit convert` (see `tlkit convert --help`)"
        ) from e
    return path


def _download(origin, destination, progress):
    with urllib.request.urlopen(origin, timeout=TIMEOUT_SECONDS) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        bar = Progbar(expected, unit_name="bytes") if progress and progress_enabled() else None
        received = 0
        with open(destination, "wb") as out:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                if bar:
                    bar.update(received)
        # http.client ends a short body quietly: compare with the announced length ourselves.
        if expected is not None and received != expected:
            raise ConnectionError(f"the connection closed after {received} of {expected} bytes")
        if bar and expected is None:
            bar.update(received, finalize=True)


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
