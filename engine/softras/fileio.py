"""Atomic file output: a reader sees either the old file or the complete new one, never half of it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, sync it and rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` keeps its previous content. An existing file
    keeps its permission bits; a new one gets 0o644. Raises FileNotFoundError when the directory is missing and
    PermissionError when it is not writable.
    """
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
    mode = (path.stat().st_mode & 0o7777) if path.exists() else 0o644
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except PermissionError as e:
        raise PermissionError(f"cannot write {path}: directory {directory} is not writable") from e
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
