"""Writing files a user asked for: complete or not at all."""

from __future__ import annotations

import os
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


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` under a temporary name in the same folder, flush it to disk and rename
    it into place: a reader (or a user after a crash or a full disk) sees the whole file or none. The
    folder is created; the temporary file is removed if the write fails."""
    path = output_file(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
