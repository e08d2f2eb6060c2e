"""The prepared-dataset format: packed shards plus a few small files, all memory-mappable.

``OUT/`` after ``alexnet prepare``::

    meta.json        count, classes, source, size, format, statistics, skipped files, shard list
    mean.npy         the mean image, float32 (size, size, 3), 0..255
    labels.npy       int64 (count,): label of image i
    index.npz        shard (int32), local (int32): where image i lives; jpeg also offset, length (int64)
    files.txt        line i: the source path of image i (for inspection, nearest neighbours)
    shards/00000.npy     format "raw":  uint8 (n, size, size, 3), a plain .npy (np.load(mmap_mode="r"))
    shards/00000.jpegs   format "jpeg": the n JPEG files back to back (slice with index.npz offsets)

Images are stored in the order they were found (class by class); the loader shuffles. ``meta.json`` is
written last: a folder without it is not a dataset (an interrupted prepare keeps its finished shards
under ``.partial/`` and a re-run picks up from there; see ``prepare.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from alexnet.errors import UserError

FORMAT_VERSION = 1
FORMATS = ("jpeg", "raw")
META = "meta.json"
MEAN = "mean.npy"
LABELS = "labels.npy"
INDEX = "index.npz"
FILES = "files.txt"
SHARDS = "shards"
PARTIAL = ".partial"
NPY_HEADER = 128  # fixed .npy header length, so a raw shard's header can be rewritten in place


def shard_name(number: int, fmt: str) -> str:
    return f"{SHARDS}/{number:05d}." + ("npy" if fmt == "raw" else "jpegs")


def npy_header(shape: tuple[int, ...]) -> bytes:
    """A version-1.0 ``.npy`` header for a C-ordered uint8 array, padded to :data:`NPY_HEADER` bytes."""
    d = "{'descr': '|u1', 'fortran_order': False, 'shape': " + repr(tuple(shape)) + ", }"
    body = d.encode("latin1")
    pad = NPY_HEADER - 10 - len(body) - 1
    if pad < 0:  # pragma: no cover (shapes are 4 small ints)
        raise ValueError(f"shape {shape} does not fit a {NPY_HEADER}-byte header")
    return b"\x93NUMPY\x01\x00" + (NPY_HEADER - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that it either does not exist or is complete (temp file + rename)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def atomic_save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class PreparedDataset:
    """A dataset written by :func:`~alexnet.data.prepare_dataset` (``alexnet prepare``).

    ``PreparedDataset(path)`` opens ``path`` (raises :class:`UserError` if it is missing or an unfinished
    prepare). Shards are memory-mapped on first use; nothing is read into RAM but the small index.

    Attributes: ``meta`` (meta.json), ``classes`` (``[{index, wnid, name}]``), ``size`` (stored side),
    ``format`` ("jpeg"/"raw"), ``labels`` (int64), ``mean_image`` (float32 (S,S,3), 0..255),
    ``mean_rgb``, ``std_rgb`` (3,) 0..255, ``pca_eigval`` (3,), ``pca_eigvec`` (3,3) columns; the PCA is
    of pixels scaled to 0..1 (see :mod:`alexnet.data.stats` and ``meta["pca_units"]``).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / META
        if not meta_path.is_file():
            if (self.path / PARTIAL).is_dir():
                raise UserError(f"{self.path} is an unfinished prepare (interrupted?): run the same "
                                "'alexnet prepare' command again to finish it")
            if not self.path.exists():
                raise UserError(f"prepared dataset not found: {self.path}")
            raise UserError(f"{self.path} is not a prepared dataset (no {META}); make one with "
                            "'alexnet prepare SRC OUT'")
        try:
            self.meta = json.loads(meta_path.read_text())
            if self.meta.get("format_version") != FORMAT_VERSION:
                raise UserError(f"{self.path}: dataset format version {self.meta.get('format_version')} "
                                f"is not supported (this alexnet reads version {FORMAT_VERSION})")
            self.labels = np.load(self.path / LABELS)
            self.mean_image = np.load(self.path / MEAN).astype(np.float32, copy=False)
            with np.load(self.path / INDEX) as idx:
                self._index = {k: idx[k] for k in idx.files}
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{self.path}: prepared dataset is damaged ({e})") from None
        self.classes: list[dict] = self.meta["classes"]
        self.size: int = int(self.meta["size"])
        self.format: str = self.meta["format"]
        self.mean_rgb = np.asarray(self.meta["mean_rgb"], np.float64)
        self.std_rgb = np.asarray(self.meta["std_rgb"], np.float64)
        self.pca_eigval = np.asarray(self.meta["pca_eigval"], np.float64)
        self.pca_eigvec = np.asarray(self.meta["pca_eigvec"], np.float64)
        if len(self.labels) != self.meta["count"] or len(self._index["shard"]) != self.meta["count"]:
            raise UserError(f"{self.path}: prepared dataset is damaged (index and count disagree)")
        self._shards: list[torch.Tensor | None] = [None] * len(self.meta["shards"])
        self._keys: list[str] | None = None

    # What the loader reads: "pixels" (uint8 HWC views) or "jpeg" (encoded bytes).
    @property
    def storage(self) -> str:
        return "pixels" if self.format == "raw" else "jpeg"

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"PreparedDataset({str(self.path)!r}: {len(self)} images, {len(self.classes)} classes, "
                f"{self.size}x{self.size} {self.format})")

    def __getstate__(self):  # picklable for worker processes: memory maps are reopened there
        state = self.__dict__.copy()
        state["_shards"] = [None] * len(self._shards)
        return state

    def _shard(self, s: int) -> torch.Tensor:
        t = self._shards[s]
        if t is None:
            info = self.meta["shards"][s]
            f = self.path / info["file"]
            try:
                if self.format == "raw":
                    # mode "c" (copy-on-write) gives a writable view, so torch.from_numpy does not warn;
                    # nothing is ever written through it.
                    arr = np.load(f, mmap_mode="c")
                    if arr.shape != (info["count"], self.size, self.size, 3) or arr.dtype != np.uint8:
                        raise ValueError(f"{info['file']} has shape {arr.shape}")
                else:
                    arr = np.memmap(f, dtype=np.uint8, mode="c")
            except (OSError, ValueError) as e:
                raise UserError(f"{self.path}: cannot read shard {info['file']} ({e})") from None
            t = self._shards[s] = torch.from_numpy(arr)
        return t

    def pixels(self, i: int) -> torch.Tensor:
        """Image ``i`` as a uint8 (S, S, 3) tensor *view* of the shard (format "raw" only)."""
        return self._shard(int(self._index["shard"][i]))[int(self._index["local"][i])]

    def jpeg(self, i: int) -> torch.Tensor:
        """The JPEG bytes of image ``i`` as a 1-D uint8 tensor view (format "jpeg" only)."""
        off = int(self._index["offset"][i])
        return self._shard(int(self._index["shard"][i]))[off:off + int(self._index["length"][i])]

    def get_uint8(self, index: int) -> np.ndarray:
        """Image ``index`` decoded: a new uint8 (S, S, 3) RGB array."""
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"image {index} out of range for {len(self)} images")
        index %= len(self)
        if self.format == "raw":
            return self.pixels(index).numpy().copy()
        from alexnet.data.jpeg import decode_rgb
        return decode_rgb(self.jpeg(index)).permute(1, 2, 0).numpy().copy()

    def path_of(self, index: int) -> str:
        """The source path (relative to SRC) that image ``index`` was made from."""
        if self._keys is None:
            self._keys = (self.path / FILES).read_text(encoding="utf-8").split("\n")[:len(self)]
        return self._keys[index]
