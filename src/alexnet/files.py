"""Writing files a user asked for: complete or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from alexnet.errors import UserError


def output_file(path: str | os.PathLike) -> Path:
    """``path`` as a file to write: refused in one line when it names a folder (the rename into place
    would fail after the work, naming the temporary file); its folder is created."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder: give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def check_writable(path: str | os.PathLike) -> None:
    """Refuse in one line, before any work, a file that could not be written at ``path``: a folder is
    there, its folder (or the nearest one that exists, where the rest will be created) is a file, or that
    folder cannot take a new file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder: give a file name to write")
    _check_can_create_in(path.absolute().parent, path)


def check_writable_folder(path: str | os.PathLike) -> None:
    """The same for a folder to write into (a run directory): refused when a file is there, or when it (or
    the nearest folder above it that exists) cannot take a new file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file, not a folder")
    _check_can_create_in(path.absolute(), path)


def _check_can_create_in(folder: Path, asked: Path) -> None:
    """Whether a file can be made in ``folder`` or the nearest folder above it that exists (tried with a
    temporary file, which covers read-only and special file systems as well as permissions)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {asked}: {folder} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".alexnet-probe"):
            pass
    except OSError as e:
        raise UserError(f"cannot write {asked}: {e.strerror or type(e).__name__} in {folder}") from None


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` under a temporary name in the same folder, flush it to disk and rename
    it into place: a reader (or a user after a crash or a full disk) sees the whole file or none. The
    folder is created; the temporary file is removed if the write fails."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """``with atomic_file(path) as f: ...``: a binary file at a temporary name beside ``path``, flushed to
    disk and renamed into place when the block ends without an error (removed otherwise); for writers that
    stream (``np.save``), so that nothing is held whole in memory first. A link at ``path`` is replaced,
    never written through."""
    path = output_file(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # name the file asked for, not our temporary one
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
