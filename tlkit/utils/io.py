"""Atomic file writes: a crash mid-write leaves the previous file intact, a full disk is a clear error."""
import contextlib
import errno
import io
import os
import shutil
import tempfile

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write failed for lack of space (or quota); the message says where and what is free."""


def _disk_full(path, error):
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MB free there"
    except OSError:
        free = "free space unknown"
    reason = "no space left on device" if error.errno == errno.ENOSPC else "disk quota exceeded"
    e = DiskFullError(f"{reason} while writing {path} ({free}). Nothing was overwritten: free some space or "
                      "write to another folder.")
    e.errno = error.errno
    return e


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    >>> with atomic_path("model.h5") as tmp:
    ...     write_everything_to(tmp)
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    # mkstemp creates the file 0600; the finished file gets the mode any other program's would (umask).
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, OSError) and not isinstance(e, DiskFullError) and e.errno in _DISK_FULL:
            raise _disk_full(path, e) from None
        raise


def _current_umask():
    mask = os.umask(0)  # the only portable way to read it is to set it and put it back
    os.umask(mask)
    return mask


def atomic_write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def atomic_h5_file(path):
    """An ``h5py.File`` built in memory; on success its bytes replace ``path`` atomically.

    >>> with atomic_h5_file("model.h5") as f:
    ...     f.attrs["name"] = "x"

    libhdf5 writing straight to a full disk can crash the process (its error path fails while
    freeing the file), leaving temporaries behind. Built in memory, the file reaches the disk through
    one plain write, where a full disk is an ordinary OSError (a DiskFullError) and the previous
    file stays intact. The cost is one copy of the file in memory while it is written.
    """
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        yield f
    atomic_write_bytes(path, buffer.getbuffer())


def remove_stale_temporaries(folder):
    """Delete the temporary files that atomic_path leaves when a process is killed mid-write
    (SIGKILL runs no cleanup). Only call it on a folder no other process is writing to."""
    removed = []
    for root, _, files in os.walk(folder):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(root, name))
                    removed.append(name)
    return removed
