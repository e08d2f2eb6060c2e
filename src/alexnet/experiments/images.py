"""Small labelled image sets held in memory as uint8 arrays, for the experiments' lean training loops.

Figure 1 trains a 90k-parameter net on 32x32 images; a whole CIFAR-10 training set is 150 MB of uint8,
so it is read once into memory (straight from the shared ``cifar10-train.tar.gz``, or a folder of class
folders, or a dataset prepared with ``alexnet prepare``) and batches are cut from that array. Classes are
the folder names, sorted (CIFAR-10's standard label order; ImageNet's WNID order).
"""

from __future__ import annotations

import os
import tarfile
import zlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from alexnet.data.images import BadImage, open_rgb, square
from alexnet.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"}


def _decode(data: bytes, size: int | None, name: str) -> np.ndarray:
    """An image's pixels as uint8 (H, W, 3), or with ``size`` its central square (the paper's
    preprocessing, with the rules of :mod:`alexnet.data.images`, as ``prepare`` stores it)."""
    try:
        img = open_rgb(data, size=size)
        return square(img, size) if size is not None else np.asarray(img, dtype=np.uint8)
    except BadImage as e:
        raise UserError(f"{name}: not a readable image ({e})") from None


def _members(source: Path) -> tuple[list[tuple[str, str]], Callable[[str], bytes]]:
    """(class name, member name) of every image under ``source``, and a reader of one member's bytes."""
    items: list[tuple[str, str]] = []
    if source.is_dir():
        for f in sorted(source.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                items.append((f.parent.name, str(f)))
        return items, lambda name: Path(name).read_bytes()
    try:
        tar = tarfile.open(source)
    except tarfile.TarError:  # its message lists every compression tried, one per line: left out
        raise UserError(f"{source}: neither a folder of class folders nor a readable tar archive") from None
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{source}: neither a folder of class folders nor a readable tar archive "
                        f"({getattr(e, 'strerror', None) or e})") from None
    blobs: dict[str, bytes] = {}
    try:
        with tar:  # gzip cannot seek: read every image's bytes once (CIFAR-10: 16 MB)
            for m in tar:
                p = PurePosixPath(m.name)
                if m.isfile() and p.suffix.lower() in IMAGE_SUFFIXES and len(p.parts) >= 2:
                    f = tar.extractfile(m)
                    if f is not None:
                        blobs[m.name] = f.read()
                        items.append((p.parent.name, m.name))
    except (OSError, tarfile.TarError, EOFError, zlib.error) as e:  # the words of 'alexnet prepare'
        raise UserError(f"{source}: archive is damaged or truncated ({e})") from None
    return sorted(items), blobs.__getitem__


def read_labelled_images(source: str | os.PathLike, *, size: int | None = None, per_class: int | None = None,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Images of ``source`` as ``(images uint8 (N, S, S, 3), labels int64 (N,), classes)``.

    ``source``: a ``.tar``/``.tar.gz`` of ``.../<class>/<image>``, a folder of class folders, or a folder
    prepared by ``alexnet prepare``. ``size``: resize (shorter side) and centre-crop to ``size`` (needed
    when the images differ in size). ``per_class``: keep that many images of each class, drawn at random
    with ``seed`` (a stratified subset, so that the classes stay balanced).
    """
    source = Path(source)
    if not source.exists():
        raise UserError(f"data not found: {source}")
    if source.is_dir() and (source / "meta.json").is_file():
        return _read_prepared(source, per_class=per_class, seed=seed)
    items, read = _members(source)
    if not items:
        raise UserError(f"{source}: no images found (expected <class>/<image> entries)")
    names = sorted({c for c, _ in items})
    by_class: dict[str, list[str]] = defaultdict(list)
    for c, name in items:
        by_class[c].append(name)
    rng = np.random.default_rng(seed)
    chosen: list[tuple[int, str]] = []
    for label, c in enumerate(names):
        files = sorted(by_class[c])
        if per_class is not None:
            if per_class < 1:
                raise UserError(f"per_class must be at least 1, got {per_class}")
            files = [files[i] for i in sorted(rng.permutation(len(files))[:per_class])]
        chosen += [(label, f) for f in files]
    images = [_decode(read(f), size, f) for _, f in chosen]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise UserError(f"{source}: images of different sizes {sorted(shapes)[:3]}...; give a size to resize them")
    labels = np.array([label for label, _ in chosen], dtype=np.int64)
    from alexnet.data.classes import make_classes

    return np.stack(images), labels, make_classes(names)


def _read_prepared(path: Path, *, per_class: int | None, seed: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    try:
        from alexnet.data import PreparedDataset
    except ImportError:  # the data package not there yet
        raise UserError(f"{path}: reading prepared datasets needs alexnet.data.PreparedDataset") from None
    ds = PreparedDataset(path)
    labels = np.asarray(ds.labels, dtype=np.int64)
    indices = np.arange(len(labels))
    if per_class is not None:
        indices = stratified_subset(labels, per_class, seed)
    images = np.stack([np.asarray(ds.get_uint8(int(i)), dtype=np.uint8) for i in indices])
    return images, labels[indices], list(ds.classes)


def stratified_subset(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of up to ``per_class`` items of each label, drawn at random with ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out.append(idx[rng.permutation(len(idx))[:per_class]])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)
