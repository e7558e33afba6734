"""Atomic file writes: every file graphgrad writes (pictures, checkpoints, plans) goes to a temporary
file beside its target and is renamed over it, so a crash or an error never leaves half a file.

The temporary file is made private by the OS (mode 0600); before the rename it gets the mode a
plain open() would have given, 0666 minus the user's umask, so a PNG or checkpoint is as readable
as any other file the user writes.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux's /proc), else by
    setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str, durable: bool = False) -> Iterator[IO[bytes]]:
    """Open a temporary binary file beside `path`; when the block ends without an error, give it the
    umask's mode and rename it to `path` (with durable=True, fsync the data and the rename too).
    On an error the temporary file is removed and `path` is left as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """Make a rename inside `folder` durable (not every file system lets a folder be opened)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
