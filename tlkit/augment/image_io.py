"""Reading and writing pictures with Pillow, Keras's helpers included.

``load_img`` / ``img_to_array`` / ``array_to_img`` / ``save_img`` keep
Keras's names, arguments and defaults. ``decode`` is the fast path the
iterators use: file -> uint8 (H, W, C) array, with JPEG draft mode (the
decoder scales by 1/2, 1/4 or 1/8 for free when the target is that much
smaller), EXIF orientation applied, and every Pillow mode converted::

    >>> x = decode("cat.jpg", color_mode="rgb", target_size=(224, 224))
    >>> x.shape, x.dtype
    ((224, 224, 3), dtype('uint8'))

``scan_images`` finds the readable pictures of a folder and reports the
others (empty, truncated, not images) instead of failing mid-epoch.
"""
import io
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps

from tlkit.augment.folders import KERAS_IMAGE_EXTENSIONS, image_files
from tlkit.utils.io import atomic_path

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "hamming": Image.Resampling.HAMMING,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
# Beyond this many decoded pixels a picture is refused rather than risk running out of memory
# (Pillow's own decompression-bomb threshold); JPEGs are draft-decoded below it when they can be.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# The largest file a picture within MAX_PIXELS can honestly be (uncompressed 16-bit RGBA, plus
# room for metadata): nothing bigger is read, so a huge or endless file cannot fill memory.
MAX_FILE_BYTES = 8 * MAX_PIXELS + (16 << 20)


class ImageLoadError(ValueError):
    """A file that is not a readable picture (empty, truncated, corrupt, not an image, too large)."""


def open_regular_file(path):
    """(binary file object, size) of ``path`` if it is a regular file of at most MAX_FILE_BYTES.
    A FIFO, device or socket is refused without blocking (opened non-blocking, then checked)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageLoadError(f"{path}: not a regular file (a FIFO, device or socket), not a picture.")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageLoadError(f"{path}: {st.st_size} bytes is larger than any picture tlkit decodes "
                                 f"({MAX_FILE_BYTES} bytes).")
        f = os.fdopen(fd, "rb")
        f.raw.name = os.fsdecode(path)  # Pillow's messages name the file, not the descriptor
        return f, st.st_size
    except BaseException:
        os.close(fd)
        raise


def _read_bounded(f, path):
    data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ImageLoadError(f"{path}: larger than any picture tlkit decodes ({MAX_FILE_BYTES} bytes).")
    return data


def _open(path):
    if isinstance(path, io.IOBase):
        data = _read_bounded(path, path)
    else:
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"path should be path-like or io.BytesIO, not {type(path)}")
        f, _ = open_regular_file(path)
        with f:
            data = _read_bounded(f, path)
    if not data:
        raise ImageLoadError(f"{path}: the file is empty.")
    # (no warnings.catch_warnings here: it is not thread-safe, and this runs in worker threads)
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{path}: too many pixels to decode safely ({e}).") from None
    except Image.UnidentifiedImageError:  # its message would name the BytesIO, not the file
        raise ImageLoadError(f"{path}: not a picture (no image format recognised in its content).") from None
    except Exception as e:
        raise ImageLoadError(f"{path}: not a readable image ({type(e).__name__}: {e}).") from None


def _exif_orientation(img):
    try:
        return img.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF blocks are common; they mean "no rotation"
        return 1


def _to_8bit(img):
    """16/32-bit integer and float pictures to 8 bits (Pillow's own convert would clip at 255)."""
    a = np.asarray(img)
    if img.mode.startswith("I;16") or (img.mode == "I" and a.max(initial=0) > 255):
        a = np.rint(a.astype(np.float64) / 257.0)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")


# Keras's load_img keeps these modes for grayscale: 16/32-bit values come back unchanged.
WIDE_GRAYSCALE_MODES = ("L", "I;16", "I")


def _convert(img, color_mode, keep_wide=False):
    if keep_wide and color_mode == "grayscale" and img.mode in WIDE_GRAYSCALE_MODES:
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    if img.mode == "P" or img.mode == "PA":
        # palette transparency is only honoured through RGBA
        img = img.convert("RGBA" if ("transparency" in img.info or img.mode == "PA") else "RGB")
    target = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}[color_mode]
    return img if img.mode == target else img.convert(target)


def _check_args(color_mode, interpolation):
    if color_mode not in CHANNELS:
        raise ValueError('color_mode must be "grayscale", "rgb", or "rgba"')
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"Invalid interpolation method {interpolation} specified. Supported "
                         f"methods are {', '.join(INTERPOLATIONS)}")


def open_image(path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False,
               keep_wide=False):
    """A loaded PIL image in ``color_mode``, oriented and resized to ``target_size`` (rows, cols).
    ``keep_wide``: 16/32-bit grayscale stays so (Keras's load_img); otherwise it becomes 8 bits."""
    _check_args(color_mode, interpolation)
    img = _open(path)
    try:
        orientation = _exif_orientation(img)
        if target_size is not None and img.format == "JPEG":
            # draft picks the largest 1/2^k scale still >= the request: decode less, same result size
            want = (target_size[1], target_size[0])
            if orientation in (5, 6, 7, 8):
                want = want[::-1]
            if keep_aspect_ratio:
                want = (max(want),) * 2
            if img.size[0] >= 2 * want[0] and img.size[1] >= 2 * want[1]:
                img.draft(img.mode, want)
        if img.size[0] * img.size[1] > MAX_PIXELS:
            raise ImageLoadError(f"{path}: {img.size[0]}x{img.size[1]} pixels is too large to decode safely.")
        img.load()
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        img = _convert(img, color_mode, keep_wide)
    except ImageLoadError:
        raise
    except Exception as e:
        raise ImageLoadError(f"{path}: cannot decode the image ({type(e).__name__}: {e}).") from None
    if target_size is not None:
        size = (int(target_size[1]), int(target_size[0]))
        if img.size != size:
            resample = INTERPOLATIONS[interpolation]
            if keep_aspect_ratio:
                width, height = img.size
                crop_h = min(height, (width * size[1]) // size[0])
                crop_w = min(width, (height * size[0]) // size[1])
                top, left = (height - crop_h) // 2, (width - crop_w) // 2
                img = img.resize(size, resample, box=(left, top, left + crop_w, top + crop_h))
            else:
                img = img.resize(size, resample)
    return img


def decode(path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False):
    """A picture file as a uint8 (H, W, C) array; raises ImageLoadError for unreadable files."""
    a = np.asarray(open_image(path, color_mode, target_size, interpolation, keep_aspect_ratio))
    return a[:, :, None] if a.ndim == 2 else a


def load_img(path, grayscale=False, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False):
    """Keras's ``load_img``: a PIL image, ``target_size`` = (height, width).

    As in Keras, a 16/32-bit grayscale picture read as "grayscale" keeps its values (mode "I;16"
    or "I"). Unlike Keras, EXIF orientation is applied and JPEGs much larger than the target
    are draft-decoded; a 16-bit picture read as "rgb"/"rgba" is scaled to 8 bits, not clipped.
    """
    if grayscale:
        warnings.warn("grayscale is deprecated. Please use color_mode = 'grayscale'")
        color_mode = "grayscale"
    return open_image(path, color_mode, target_size, interpolation, keep_aspect_ratio, keep_wide=True)


def img_to_array(img, data_format=None, dtype=None):
    """Keras's ``img_to_array``: a PIL image to a 3D float32 array (channels last by default)."""
    data_format = data_format or "channels_last"
    if data_format not in {"channels_first", "channels_last"}:
        raise ValueError(f"Unknown data_format: {data_format}")
    x = np.asarray(img, dtype=dtype or "float32")
    if x.ndim == 2:
        x = x[:, :, None]
    elif x.ndim != 3:
        raise ValueError(f"Unsupported image shape: {x.shape}")
    return np.ascontiguousarray(x.transpose(2, 0, 1)) if data_format == "channels_first" else x


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """Keras's ``array_to_img``: a 3D array to a PIL image (stretched to 0..255 when ``scale``)."""
    data_format = data_format or "channels_last"
    x = np.asarray(x, dtype=dtype or "float32")
    if x.ndim != 3:
        raise ValueError(f"Expected image array to have rank 3 (single image). Got array with shape: {x.shape}")
    if data_format not in {"channels_first", "channels_last"}:
        raise ValueError(f"Invalid data_format: {data_format}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        top = np.max(x)
        if top != 0:
            x = x / top
        x = x * 255
    channels = x.shape[2]
    if channels == 4:
        return Image.fromarray(x.astype("uint8"), "RGBA")
    if channels == 3:
        return Image.fromarray(x.astype("uint8"), "RGB")
    if channels == 1:
        if np.max(x) > 255:  # 32-bit signed integer grayscale, as Keras
            return Image.fromarray(x[:, :, 0].astype("int32"), "I")
        return Image.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"Unsupported channel number: {channels}")


def atomic_save(img, path, file_format=None, **kwargs):
    """Save a PIL image through a temporary file in the same folder, then rename."""
    path = os.fspath(path)
    file_format = file_format or Image.registered_extensions().get(os.path.splitext(path)[1].lower())
    if file_format is None:
        raise ValueError(f"{path}: cannot tell the image format from the extension; pass file_format "
                         "(e.g. 'png' or 'jpeg').")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            img.save(f, format=file_format, **kwargs)


def _png_wide_grayscale(img):
    """PNG holds 16-bit grayscale, not Pillow's 32-bit mode "I": store values 0..65535 as 16 bits
    (Keras's save_img fails there), and refuse others with what to do instead."""
    a = np.asarray(img)
    if a.min() < 0 or a.max() > 65535:
        raise ValueError(f"PNG stores grayscale values 0..65535; these range over {a.min()}..{a.max()}. "
                         "Save as .tiff, or pass scale=True.")
    return Image.fromarray(a.astype(np.uint16))  # Pillow names a uint16 array "I;16"


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Keras's ``save_img``: write an image array to ``path`` (atomically)."""
    if file_format is not None and file_format.lower() == "jpg":
        file_format = "jpeg"
    img = array_to_img(x, data_format=data_format, scale=scale)
    if img.mode == "RGBA" and ((file_format or "").lower() == "jpeg"
                               or (file_format is None and str(path).lower().endswith((".jpg", ".jpeg")))):
        warnings.warn("The JPG format does not support RGBA images, converting to RGB.")
        img = img.convert("RGB")
    fmt = (file_format or os.path.splitext(str(path))[1].lstrip(".")).lower()
    if img.mode == "I" and fmt == "png":
        img = _png_wide_grayscale(img)
    if hasattr(path, "write"):  # a file object, as Keras allows: the caller names the format
        if file_format is None:
            raise ValueError("save_img to a file object needs file_format (e.g. 'png' or 'jpeg').")
        img.save(path, format=file_format, **kwargs)
        return
    atomic_save(img, path, file_format, **kwargs)


def _tail_ok(f, size, fmt):
    """Cheap truncation check without decoding: JPEG ends with EOI, PNG with IEND."""
    if fmt == "JPEG":
        f.seek(max(0, size - 64))
        return b"\xff\xd9" in f.read()
    if fmt == "PNG":
        f.seek(max(0, size - 12))
        return b"IEND" in f.read()
    return True


def check_image(path):
    """None for a file that looks like a readable picture, else the reason it is not."""
    try:
        f, size = open_regular_file(path)
        if size == 0:
            f.close()
            return "empty file"
        with f:
            img = Image.open(f)
            fmt = img.format
            img.verify()  # parses the structure (PNG chunks and CRCs), decodes nothing
            if not _tail_ok(f, size, fmt):
                return f"truncated {fmt} file"
    except ImageLoadError as e:
        return str(e).split(": ", 1)[-1]
    except Image.UnidentifiedImageError:  # its message names the open file object, not the picture
        return "not a readable image (no picture format recognised in its content)"
    except Exception as e:
        return f"not a readable image ({type(e).__name__}: {e})"
    return None


def list_pictures(directory, ext=KERAS_IMAGE_EXTENSIONS):
    """Keras's ``list_pictures``: files under ``directory`` (recursively) whose name ends with ``.ext``
    for one of ``ext`` (a string or a tuple); links to folders are not followed, as in Keras.

    Unlike Keras, hidden files and folders are left out (they are system litter: macOS's
    ``._photo.jpg`` resource forks, ``.thumbnails/``), and so are FIFOs and devices, and the
    list is sorted (by folder, then name) instead of in the file system's order."""
    return image_files(directory, False, ext)


# (path, size, mtime) -> reason or None: a folder read by several iterators (training and
# validation subsets, augmented and plain) is checked once.
_scan_memo = {}
SCAN_PROGRESS_DELAY = 1.0  # seconds: small folders scan silently


def _check_image_memo(path):
    try:
        st = os.stat(path)
    except OSError as e:
        return f"not a readable image ({type(e).__name__}: {e})"
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _scan_memo:
        _scan_memo[key] = check_image(path)
    return _scan_memo[key]


def scan_images(paths, threads=8, verbose=1):
    """Split ``paths`` into (readable, [(path, reason), ...]) by checking every file's header and end.

    A progress bar appears when the scan lasts more than a second (``verbose=0``: never).
    """
    from concurrent.futures import ThreadPoolExecutor

    from tlkit.utils.progbar import Progbar

    paths = list(paths)
    bar = Progbar(len(paths), verbose=verbose, unit_name="file", delay=SCAN_PROGRESS_DELAY)
    reasons = []
    if paths:
        with ThreadPoolExecutor(max(1, min(threads, len(paths)))) as pool:
            for reason in pool.map(_check_image_memo, paths):
                reasons.append(reason)
                if len(reasons) % 64 == 0 or len(reasons) == len(paths):
                    bar.update(len(reasons))
    good = [p for p, r in zip(paths, reasons) if r is None]
    bad = [(p, r) for p, r in zip(paths, reasons) if r is not None]
    return good, bad
