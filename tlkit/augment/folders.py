"""Walking image folders: the one place that decides which files are the pictures of a folder and
which subfolders are its classes (training scan, predict, evaluate and ``tlkit augment`` all ask here).

- Hidden files and folders (name starting with ".") are system litter, not pictures: left out.
- Only regular files are listed: a FIFO, a device (a link to ``/dev/zero``) or a socket named
  ``x.jpg`` is never opened. Broken links are listed, so the scan reports them as unreadable.
- Links to folders are followed (``follow_links``) at most once per real folder, told apart by
  (st_dev, st_ino), and never up to a folder that contains the starting one: a link back to a
  parent is walked zero times, not forever.
- A class folder that links back into the data folder (to the folder itself, a parent, or
  another folder inside it) is not a class: it would only repeat other classes' pictures.
"""
import os
import stat
import warnings

# Keras 2's white_list_formats (its iterators, DataFrameIterator and list_pictures), without the dot.
KERAS_IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")
# What tlkit's folder readers take: Keras's, plus webp and gif.
IMAGE_EXTENSIONS = KERAS_IMAGE_EXTENSIONS + ("webp", "gif")


def has_image_extension(name, extensions=IMAGE_EXTENSIONS):
    """True when ``name`` ends with one of ``extensions`` (a string or a tuple, with or without the dot)."""
    if isinstance(extensions, str):
        extensions = (extensions,)
    return name.lower().endswith(tuple("." + e.lower().lstrip(".") for e in extensions))


def validate_filename(filename, white_list_formats):
    """Keras's ``validate_filename``: ``filename`` is an existing file with one of the extensions.

    Unlike Keras's bare ``endswith``, the extension must follow a dot: ``photo.xpng`` is not a PNG.
    """
    return has_image_extension(os.fspath(filename), white_list_formats) and os.path.isfile(filename)


def _identity(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _visible_entries(path):
    return sorted((e for e in os.scandir(path) if not e.name.startswith(".")), key=lambda e: e.name)


def _is_listable_file(entry):
    """A regular file, or a broken link (listed so the scan reports it); never a FIFO or device."""
    try:
        return stat.S_ISREG(entry.stat(follow_symlinks=True).st_mode)
    except OSError:
        return entry.is_symlink()


def _is_dir(entry, follow_links):
    try:
        return entry.is_dir(follow_symlinks=follow_links)
    except OSError:
        return False


def _enclosing_folders(folder):
    """Identities of the real folders that contain ``folder`` (its parents up to the root)."""
    out, path = set(), os.path.realpath(folder)
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return out
        path = parent
        try:
            out.add(_identity(path))
        except OSError:
            pass


def image_files(folder, follow_links=True, extensions=IMAGE_EXTENSIONS, seen=None):
    """Sorted paths of the pictures under ``folder`` (recursively, by folder path then name, as Keras
    sorts them). ``seen``: a set of real-folder identities shared between calls so that several
    starting points that overlap list each picture once."""
    seen = set() if seen is None else seen
    folder = os.fspath(folder)
    enclosing = _enclosing_folders(folder)  # a link up to one of these would walk the start again
    walked, pending = [], [folder]
    while pending:
        root = pending.pop()
        try:
            identity = _identity(root)
            if identity in seen or identity in enclosing:
                continue
            seen.add(identity)
            entries = _visible_entries(root)
        except OSError:  # unreadable or vanished folder: nothing to list from it
            continue
        files = []
        for entry in entries:
            if _is_dir(entry, follow_links):  # without follow_links a link to a folder is neither
                pending.append(entry.path)
            elif has_image_extension(entry.name, extensions) and _is_listable_file(entry):
                files.append(entry.path)
        walked.append((root, files))
    return [path for _, files in sorted(walked, key=lambda item: item[0]) for path in files]


def subfolders(path):
    """Sorted names of the visible subfolders of ``path`` that can be classes (links followed),
    leaving out links back into ``path`` and second links to one real folder."""
    path = os.fspath(path)
    real_root = os.path.realpath(path)
    names, identities, refused = [], set(), []
    for entry in _visible_entries(path):
        if not _is_dir(entry, True):
            continue
        if entry.is_symlink():
            real = os.path.realpath(entry.path)
            if real == real_root or real.startswith(real_root + os.sep) or real_root.startswith(real + os.sep):
                refused.append(entry.name)
                continue
        try:
            identity = _identity(entry.path)
        except OSError:
            continue
        if identity in identities:
            refused.append(entry.name)
            continue
        identities.add(identity)
        names.append(entry.name)
    if refused:
        warnings.warn(f"{path}: left out {', '.join(repr(n) for n in refused)}: link(s) back into the folder or to "
                      "a folder already listed, not classes of their own.", stacklevel=2)
    return names
