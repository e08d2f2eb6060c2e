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
import re
import zipfile
import zlib
from collections.abc import Sequence
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


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def atomic_save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


# Bounds on what a meta.json may ask for: nothing is allocated or opened beyond them.
MAX_IMAGES = 100_000_000
MAX_CLASSES = 1_000_000
MAX_SIZE = 4096


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite_numbers(v, shape: tuple[int, ...]) -> bool:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return a.shape == shape and bool(np.isfinite(a).all())


def _check_meta(meta: dict, root: Path) -> None:
    """Refuse (ValueError) a meta.json whose fields have the wrong type, leave their bounds, or name a
    shard outside the dataset directory: a prepared dataset is user input like any other."""
    count, size, classes, shards = meta.get("count"), meta.get("size"), meta.get("classes"), meta.get("shards")
    if not _is_int(count) or not 0 <= count <= MAX_IMAGES:
        raise ValueError(f"count must be an integer in 0..{MAX_IMAGES}, got {count!r}")
    if not _is_int(size) or not 1 <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer in 1..{MAX_SIZE}, got {size!r}")
    if meta.get("format") not in ("jpeg", "raw"):
        raise ValueError(f"format must be jpeg or raw, got {meta.get('format')!r}")
    if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) for c in classes):
        raise ValueError("classes must be a list of 1.."
                         f"{MAX_CLASSES} entries, each with a name")
    num_classes = meta.get("num_classes", len(classes))  # optional; when given, it must agree
    if not _is_int(num_classes) or num_classes != len(classes):
        raise ValueError(f"num_classes must equal the {len(classes)} classes listed, got {num_classes!r}")
    for key, shape in (("mean_rgb", (3,)), ("std_rgb", (3,)), ("pca_eigval", (3,)), ("pca_eigvec", (3, 3))):
        if not _finite_numbers(meta.get(key), shape):
            raise ValueError(f"{key} must be {'x'.join(map(str, shape))} finite numbers")
    # Statistics of pixels: means and stds in 0..255, PCA eigenvalues of the covariance of values in 0..1
    # (at most 0.75); a huge eigenvalue would make the lighting noise the whole image
    for key, low, high in (("mean_rgb", 0.0, 255.0), ("std_rgb", 0.0, 255.0), ("pca_eigval", -1e-6, 1.0)):
        values = np.asarray(meta[key], np.float64)
        if not ((values >= low) & (values <= high)).all():
            raise ValueError(f"{key} must lie in {low:g}..{high:g}")
    for c in classes:
        if not isinstance(c.get("wnid"), (str, type(None))) or not _is_int(c.get("index", 0)):
            raise ValueError("each class's wnid must be text or null, its index an integer")
    if not isinstance(shards, list) or not all(
            isinstance(sh, dict) and isinstance(sh.get("file"), str) and _is_int(sh.get("count"))
            and sh["count"] >= 0 for sh in shards):
        raise ValueError("shards must be a list of {file, count} entries")
    if sum(sh["count"] for sh in shards) != count:
        raise ValueError("the shards' counts do not add up to count")
    base = root.resolve()
    for sh in shards:
        f = (root / sh["file"]).resolve()
        if not f.is_relative_to(base) or f == base:
            raise ValueError(f"shard {sh['file']!r} lies outside the dataset directory")


def _npy_shape(f, name: str, shape: tuple) -> None:
    """Read a .npy header from ``f`` and refuse (ValueError) another shape or a dtype of objects, before
    any of its data is read (a header may declare 10**11 entries)."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    found, _, dtype = read(f)
    if tuple(found) != tuple(shape) or dtype.hasobject or dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold {'x'.join(map(str, shape)) or 'one'} numbers, "
                         f"its header says {'x'.join(map(str, found))} of {dtype}")


def _load_npy(path: Path, shape: tuple) -> np.ndarray:
    with open(path, "rb") as f:
        _npy_shape(f, path.name, shape)
    return np.load(path, allow_pickle=False)


def _load_npz(path: Path, keys: Sequence[str], shape: tuple) -> dict[str, np.ndarray]:
    """Only the arrays ``keys`` of an .npz, each checked by its header before it is decompressed (another
    member, or a header declaring more, is never inflated: a 6 MB file can hold 6 GB of zeros)."""
    out = {}
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        for key in keys:
            if f"{key}.npy" not in names:
                raise ValueError(f"{path.name} must hold {'x'.join(map(str, shape))} integers '{key}'")
            with z.open(f"{key}.npy") as f:
                _npy_shape(f, f"{path.name}'s {key!r}", shape)
            with z.open(f"{key}.npy") as f:
                out[key] = np.lib.format.read_array(f, allow_pickle=False)
    return out


def _check_arrays(meta: dict, root: Path, labels: np.ndarray, mean_image: np.ndarray, index: dict) -> None:
    """The arrays beside meta.json: labels in range, the mean image's shape, every index entry inside
    its shard (raw: the image exists; jpeg: the byte range lies within the shard file)."""
    count, size, shards = meta["count"], meta["size"], meta["shards"]
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels.npy must hold {count} integers")
    if count and (labels.min() < 0 or labels.max() >= len(meta["classes"])):
        raise ValueError(f"labels must lie in 0..{len(meta['classes']) - 1}")
    if mean_image.shape != (size, size, 3) or not np.isfinite(mean_image).all():
        raise ValueError(f"the mean image must be {size}x{size}x3 finite numbers")
    need = ("shard", "local") if meta["format"] == "raw" else ("shard", "offset", "length")
    for key in need:
        if key not in index or index[key].shape != (count,) or not np.issubdtype(index[key].dtype, np.integer):
            raise ValueError(f"index.npz must hold {count} integers '{key}'")
    shard = index["shard"].astype(np.int64)
    if count and (shard.min() < 0 or shard.max() >= len(shards)):
        raise ValueError("the index names a shard that meta.json does not list")
    if meta["format"] == "raw":
        local = index["local"].astype(np.int64)
        per_shard = np.asarray([sh["count"] for sh in shards], np.int64)
        if count and (local.min() < 0 or (local >= per_shard[shard]).any()):
            raise ValueError("the index points past the end of a shard")
    else:
        sizes = np.asarray([(root / sh["file"]).stat().st_size for sh in shards], np.int64)
        offset, length = index["offset"].astype(np.int64), index["length"].astype(np.int64)
        if count and (offset.min() < 0 or length.min() < 1 or (offset + length > sizes[shard]).any()):
            raise ValueError("the index points past the end of a shard")


def damaged_image(dataset, items: Sequence[int], reason: str) -> UserError:
    """The one-line error for stored images ``items`` of ``dataset`` that no longer decode: the same
    words for every reader of a prepared dataset (:meth:`PreparedDataset.get_uint8`, the Loader)."""
    where = items[0] if len(items) == 1 else f"one of images {items[0]}..{items[-1]}"
    shard = getattr(dataset, "_index", {}).get("shard")
    in_shard = f" (shard {int(shard[items[0]])})" if shard is not None and len(items) == 1 else ""
    return UserError(f"{getattr(dataset, 'path', 'the dataset')}: image {where}{in_shard} is damaged ({reason}); "
                     "the prepared dataset's files changed after it was written: prepare it again")


def decode_stored(dataset, items: Sequence[int], size: int, device="cpu") -> list[torch.Tensor]:
    """The stored JPEGs of ``items`` (``dataset.jpeg(i)``) decoded to uint8 (3, size, size) on ``device``;
    one that does not decode, or decodes to another shape, is :func:`damaged_image`'s UserError."""
    from alexnet.data.jpeg import decode_rgb

    items = [int(i) for i in items]
    try:
        out = decode_rgb([dataset.jpeg(i) for i in items], device=device)
    except RuntimeError as e:
        # the decoder's reason, without TorchCodec's "function, source.cpp:line, " prefix
        text = str(e).strip().splitlines()[0] if str(e).strip() else "cannot decode"
        raise damaged_image(dataset, items, re.sub(r"^\w+, \S+:\d+, ", "", text)) from None
    for t in out:
        if tuple(t.shape) != (3, size, size):
            raise damaged_image(dataset, items, f"decoded to {tuple(t.shape)}, not (3, {size}, {size})")
    return out


def _prepare_hint(path: Path) -> str:
    """The prepare command for ``path``: with its own name when it looks like images to prepare (a folder,
    or a tar archive), else the general form."""
    import shlex

    if path.is_dir() and any((path / f).is_file() for f in ("last.pt", "weights.safetensors", "config.yaml")):
        return ("alexnet prepare SRC OUT; this folder is a training run's (give it to --weights, or to "
                "--resume to continue it)")
    name = path.name.split(".")[0] if path.name else ""
    if name and (path.is_dir() or path.name.endswith((".tar", ".tar.gz", ".tgz"))):
        if Path("data", name).resolve() == path.resolve():  # images in data/NAME: not into themselves
            name += "-prepared"
        if not Path("data", name).exists():  # an OUT that is there already would be refused
            out = shlex.quote(f"data/{name}")
            return f"alexnet prepare {shlex.quote(str(path))} {out} (then use {out})"
        return f"alexnet prepare {shlex.quote(str(path))} OUT"
    return "alexnet prepare SRC OUT"


class ImageItems(torch.utils.data.Dataset):
    """``dataset[i]`` as torchvision's datasets give it: ``(image, label)``, the image a uint8 (3, S, S) RGB
    tensor, so that a plain ``torch.utils.data.DataLoader`` (with ``torchvision.transforms.v2``) reads a
    prepared dataset too (``Subset``, ``ConcatDataset`` and ``random_split`` as well: ``i`` may be a
    0-d integer tensor). The :class:`~alexnet.data.Loader` is the fast path (whole batches, no Python
    per image, the augmentation on the device)."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if isinstance(index, torch.Tensor) and index.ndim == 0 and not index.is_floating_point() \
                and index.dtype != torch.bool and not index.is_complex():
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset indices are integers, got {type(index).__name__}")
        return torch.from_numpy(self.get_uint8(index)).permute(2, 0, 1), int(self.labels[int(index)])


class PreparedDataset(ImageItems):
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
            raise UserError(f"{self.path} is not a prepared dataset (no {META}); make one with: "
                            f"{_prepare_hint(self.path)}")
        try:
            self._member(META)
            self.meta = json.loads(meta_path.read_text())
            if not isinstance(self.meta, dict):
                raise ValueError("meta.json is not a mapping")
            version = self.meta.get("format_version")
            if version != FORMAT_VERSION or isinstance(version, bool):
                raise UserError(f"{self.path}: dataset format version {self.meta.get('format_version')} "
                                f"is not supported (this alexnet reads version {FORMAT_VERSION})")
            _check_meta(self.meta, self.path)
            count, size = self.meta["count"], self.meta["size"]
            self.labels = _load_npy(self._member(LABELS), (count,))
            self.mean_image = _load_npy(self._member(MEAN), (size, size, 3)).astype(np.float32, copy=False)
            keys = ("shard", "local") if self.meta["format"] == "raw" else ("shard", "offset", "length")
            self._index = _load_npz(self._member(INDEX), keys, (count,))
            _check_arrays(self.meta, self.path, self.labels, self.mean_image, self._index)
        except (OSError, ValueError, KeyError, TypeError, EOFError, RecursionError, zipfile.BadZipFile,
                zlib.error) as e:
            # EOFError: an empty .npy; BadZipFile, zlib.error: a truncated or altered index.npz
            raise UserError(f"{self.path}: prepared dataset is damaged ({str(e) or type(e).__name__})") from None
        self.classes: list[dict] = self.meta["classes"]
        self.size: int = int(self.meta["size"])
        self.format: str = self.meta["format"]
        self.mean_rgb = np.asarray(self.meta["mean_rgb"], np.float64)
        self.std_rgb = np.asarray(self.meta["std_rgb"], np.float64)
        self.pca_eigval = np.asarray(self.meta["pca_eigval"], np.float64)
        self.pca_eigvec = np.asarray(self.meta["pca_eigvec"], np.float64)
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
            except (OSError, ValueError, EOFError) as e:  # EOFError: an empty raw shard
                raise UserError(f"{self.path}: prepared dataset is damaged (cannot read shard {info['file']}: "
                                f"{str(e) or type(e).__name__}); prepare it again") from None
            t = self._shards[s] = torch.from_numpy(arr)
        return t

    def pixels(self, i: int) -> torch.Tensor:
        """Image ``i`` as a uint8 (S, S, 3) tensor *view* of the shard (format "raw" only)."""
        return self._shard(int(self._index["shard"][i]))[int(self._index["local"][i])]

    def gather_pixels(self, items: np.ndarray, out: np.ndarray) -> None:
        """Images ``items`` (format "raw") into ``out``, uint8 (N, S, S, 3): one vectorised copy per shard
        the batch touches, no Python per image (the loader's CUDA path gathers whole batches so)."""
        items = np.asarray(items, dtype=np.int64)
        shards, local = self._index["shard"][items], self._index["local"][items]
        for s in np.unique(shards):
            pos = np.flatnonzero(shards == s)
            out[pos] = self._shard(int(s)).numpy()[local[pos]]

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
        return decode_stored(self, [index], self.size)[0].permute(1, 2, 0).numpy().copy()

    def _member(self, name: str) -> Path:
        """``name`` in the dataset's folder, if it is a regular file there (not a link out of it, not a FIFO,
        whose opening would wait forever), else ValueError."""
        path = self.path / name
        real = path.resolve()
        if not real.is_relative_to(self.path.resolve()) or not real.is_file():
            raise ValueError(f"{name} is not a file inside the dataset directory")
        return path

    def path_of(self, index: int) -> str:
        """The source path (relative to SRC) that image ``index`` was made from."""
        if self._keys is None:
            try:
                self._keys = self._member(FILES).read_text(encoding="utf-8").split("\n")[:len(self)]
            except (OSError, ValueError) as e:
                raise UserError(f"{self.path}: prepared dataset is damaged (cannot read {FILES}: "
                                f"{getattr(e, 'strerror', None) or e})") from None
        return self._keys[index]
