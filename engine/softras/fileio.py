"""Files: atomic output (a reader sees either the old file or the complete new one, never half of it), and where
the shipped model files lie."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

__all__ = ["atomic_write", "atomic_write_group", "shipped_file"]

Writer = Callable[[BinaryIO], None]


def shipped_file(filename: str, env: str) -> Path:
    """A shipped model file: ``$<env>`` if set, else ``models/<filename>`` beside the package (the repository root
    in a checkout, the extension folder in the Blender extension); the last place looked at when none exists."""
    override = os.environ.get(env)
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    candidates = [parent / "models" / filename for parent in here.parents[:2]]
    return next((c for c in candidates if c.is_file()), candidates[-1])


def atomic_write(path: str | os.PathLike, write: Writer) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, sync it and rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` keeps its previous content. An existing file
    keeps its permission bits; a new one gets 0o644. Raises FileNotFoundError when the directory is missing and
    PermissionError when it is not writable.
    """
    return atomic_write_group([(path, write)])[0]


def atomic_write_group(files: Sequence[tuple[str | os.PathLike, Writer]]) -> list[Path]:
    """Write several files that belong together (a mesh and its material and texture) as :func:`atomic_write` does
    one: every file is written and synced to its temporary name first, and only when all of them succeeded are
    they renamed into place, in the given order (put the file that refers to the others last). On any exception
    before the renames, no target is touched and every temporary file is removed."""
    temporaries: list[tuple[str, Path, int]] = []
    try:
        for path, write in files:
            path = Path(path)
            directory = path.parent
            if not directory.is_dir():
                raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
            mode = (path.stat().st_mode & 0o7777) if path.exists() else 0o644
            try:
                fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
            except PermissionError as e:
                raise PermissionError(f"cannot write {path}: directory {directory} is not writable") from e
            temporaries.append((tmp, path, mode))
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
        for tmp, path, _ in temporaries:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _, _ in temporaries:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [path for _, path, _ in temporaries]
