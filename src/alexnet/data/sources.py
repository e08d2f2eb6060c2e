"""Where labelled images come from: the four layouts ``alexnet prepare`` reads.

1. ``folder``: one sub-folder per class (ImageNet's train layout, ImageFolder, Imagenette);
2. ``ilsvrc2012``: the official ``ILSVRC2012_img_{train,val}.tar`` + ``ILSVRC2012_devkit_t12.tar.gz``,
   labelled and ordered as ``torchvision.datasets.ImageNet`` does (its devkit parser is used);
3. ``labels``: a flat folder of images with a Caffe-style list ``<file> <class index>``;
4. ``tar``: a ``.tar`` / ``.tar.gz`` holding layout 1, read in place (never unpacked to disk); a hard
   link or symlink is read as the file it leads to inside the archive, and never followed out of it.

:func:`open_source` lists a source: it fixes the classes, the order of the files ("found" files, each
with its label) and how to read each file's bytes. Decoding happens later, in the prepare workers.
Reading: files on disk and members of an uncompressed tar are random-access (a worker reads its own
byte ranges, so the ILSVRC train tar of tars is read in parallel without unpacking); a compressed tar
can only be read front to back, so one reader streams it and hands the bytes to the workers.
"""

from __future__ import annotations

import bisect
import os
import posixpath
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from alexnet.data.classes import ClassFile, make_classes, read_class_file, read_label_list
from alexnet.errors import UserError

ILSVRC_TRAIN = "ILSVRC2012_img_train.tar"
ILSVRC_VAL = "ILSVRC2012_img_val.tar"
ILSVRC_DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"

# Compressed-archive signatures: gzip, bzip2, xz. Anything else opened by tarfile is a plain tar.
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
# A link in a tar is followed through at most this many links (a longer chain is taken for a loop).
MAX_LINK_DEPTH = 32
NOT_IN_CLASS_FOLDER = "not in a class folder"


def ignored_name(name: str) -> bool:
    """Hidden files, macOS resource forks (``._x.JPEG``) and ``__MACOSX`` folders are not images."""
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/") if part)


@dataclass
class Source:
    """A listed source: classes, the found files in order, their labels and how to read them."""

    layout: str  # "folder" | "labels" | "tar" | "ilsvrc2012"
    description: str  # recorded as meta.json "source"
    classes: list[dict]
    keys: list[str]  # one per found file, relative to the source (shown in "skipped" and files.txt)
    labels: np.ndarray  # int64, one per found file
    root: Path | None = None  # files on disk: root / keys[i]
    archive: Path | None = None  # uncompressed tar: bytes offsets[i] : offsets[i] + lengths[i]
    offsets: np.ndarray | None = None
    lengths: np.ndarray | None = None
    stream: Path | None = None  # compressed tar: member number member_index[i] (counting every member)
    member_index: np.ndarray | None = None
    settings: dict = field(default_factory=dict)  # what else defines the listing (for resume checks)
    # Found but never read, {"path", "reason"}: files beside the class folders, links in a tar that lead
    # nowhere inside it. Counted in "found" and listed as skipped, so that nothing found goes unmentioned.
    skipped: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def sequential(self) -> bool:
        """True when the bytes can only be read front to back (a compressed tar)."""
        return self.stream is not None

    def reader(self, start: int, stop: int) -> tuple:
        """A picklable recipe for a worker to read files ``start:stop`` itself (random-access sources)."""
        if self.root is not None:
            return ("files", [str(self.root / k) for k in self.keys[start:stop]])
        if self.archive is not None:
            return ("ranges", str(self.archive), self.offsets[start:stop].tolist(),
                    self.lengths[start:stop].tolist())
        raise RuntimeError("a compressed tar is read with stream_chunks()")

    def stream_chunks(self, chunks: Sequence[tuple[int, int]]) -> Iterator[tuple[int, list]]:
        """Read a compressed tar once, front to back; yield ``(chunk number, [bytes or OSError, ...])``
        for each ``(start, stop)`` range of found files, in the order the chunks complete."""
        assert self.stream is not None and self.member_index is not None
        # member number -> [(chunk, position in chunk), ...]: a file and a link to it read the same member
        wanted: dict[int, list[tuple[int, int]]] = {}
        pending: dict[int, list] = {}
        for c, (start, stop) in enumerate(chunks):
            pending[c] = [None] * (stop - start)
            for pos, i in enumerate(range(start, stop)):
                wanted.setdefault(int(self.member_index[i]), []).append((c, pos))
        remaining = {c: len(v) for c, v in pending.items()}
        for c in [c for c, n in remaining.items() if n == 0]:
            yield c, pending.pop(c)
        if not wanted:
            return
        try:
            with tarfile.open(self.stream, "r|*") as tf:
                for number, m in enumerate(tf):
                    if number not in wanted:
                        continue
                    try:
                        f = tf.extractfile(m) if m.isreg() else None
                        data = OSError("not a regular file") if f is None else \
                            OSError(_too_large(m.size)) if m.size > MAX_FILE_BYTES else f.read()
                    except (OSError, tarfile.TarError) as e:
                        data = OSError(f"cannot read from archive: {e}")
                    for c, pos in wanted.pop(number):
                        pending[c][pos] = data
                        remaining[c] -= 1
                        if remaining[c] == 0:
                            yield c, pending.pop(c)
                    if not wanted:
                        break
        except (OSError, tarfile.TarError, EOFError) as e:
            raise UserError(f"{self.stream}: archive is damaged or truncated ({e})") from None
        if wanted:  # the archive changed since it was listed
            raise UserError(f"{self.stream}: {sum(map(len, wanted.values()))} listed files are missing on the second read; "
                            "was the archive modified during prepare?")


# --------------------------------------------------------------------------- reading (in workers)

MAX_FILE_BYTES = 512 << 20
"""The largest image file read (512 MiB; a photo at the pixel limit, 250 million, is far smaller as a
JPEG): a bigger one is skipped unread (a 3 MB tar.gz can hold a "file" of 3 GiB of zeros)."""


def _too_large(size: int) -> str:
    return f"file too large: {size:,} bytes, over the limit of {MAX_FILE_BYTES:,}"


def read_items(reader: tuple) -> Iterator[bytes | OSError]:
    """Yield the bytes of each file a :meth:`Source.reader` recipe names (an ``OSError`` if unreadable)."""
    kind = reader[0]
    if kind == "files":
        for path in reader[1]:
            try:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size > MAX_FILE_BYTES:
                        yield OSError(_too_large(size))
                        continue
                    data = f.read(size + 1)  # (read(n) reserves n bytes first: never the limit itself)
                    if len(data) > size:  # it grew since: read on, up to the limit
                        data += f.read(MAX_FILE_BYTES + 1 - len(data))
                    yield data if len(data) <= MAX_FILE_BYTES else OSError(_too_large(len(data)))
            except OSError as e:
                yield OSError(f"cannot read: {e.strerror or e}")
    elif kind == "ranges":
        _, archive, offsets, lengths = reader
        with open(archive, "rb") as f:
            for off, n in zip(offsets, lengths, strict=True):
                if n > MAX_FILE_BYTES:
                    yield OSError(_too_large(n))
                    continue
                try:
                    data = os.pread(f.fileno(), n, off)
                    yield data if len(data) == n else OSError("archive ends inside this file (truncated)")
                except OSError as e:
                    yield OSError(f"cannot read from archive: {e.strerror or e}")
    elif kind == "bytes":
        yield from reader[1]
    else:  # pragma: no cover
        raise ValueError(kind)


# --------------------------------------------------------------------------- listing

def open_source(src: str | Path, *, classes_file: str | Path | None = None,
                labels_file: str | Path | None = None, subdir: str | None = None,
                split: str | None = None) -> Source:
    """List ``src`` (any of the four layouts; see the module docstring).

    ``classes_file`` fixes the class list and order (line i = class i); class folders are looked up in it
    by name. Without it classes are the sorted folder names (ILSVRC: the devkit's sorted WNIDs).
    ``subdir`` picks a folder inside ``src`` (e.g. ``imagenette/train`` in an archive holding train and
    val). ``split`` picks ``train`` / ``val`` of the official ILSVRC-2012 files.
    Raises :class:`UserError` for a missing ``src`` or a layout it cannot tell.
    """
    check_source_args(src, classes_file=classes_file, labels_file=labels_file, subdir=subdir, split=split)
    src = Path(src)
    synsets = read_class_file(classes_file) if classes_file else None
    if labels_file is not None:
        return _open_labels(src, labels_file, synsets, subdir)
    if src.is_file():
        if src.name in (ILSVRC_TRAIN, ILSVRC_VAL):
            return _open_ilsvrc(src.parent, src, synsets, "train" if src.name == ILSVRC_TRAIN else "val")
        if not _is_tar(src):
            raise UserError(f"SRC {src} is a file but not a tar archive; expected a folder of class "
                            "folders, a .tar/.tar.gz of one, or the ILSVRC-2012 files")
        return _open_tar(src, synsets, subdir)
    if not src.is_dir():
        raise UserError(f"SRC {src} is neither a file nor a folder")
    if is_ilsvrc_folder(src, subdir):
        split = split or ("train" if (src / ILSVRC_TRAIN).exists() else "val")
        tar = src / (ILSVRC_TRAIN if split == "train" else ILSVRC_VAL)
        if not tar.exists():
            raise UserError(f"{src} has no {tar.name} for split {split!r}")
        return _open_ilsvrc(src, tar, synsets, split)
    return _open_folder(src, synsets, subdir)


def check_source_args(src: str | Path, *, classes_file=None, labels_file=None, subdir: str | None = None,
                      split: str | None = None) -> None:
    """The checks of :func:`open_source` that need no listing, so that a caller can make them before it
    creates anything: SRC exists, the classes file reads, ``split`` fits the source."""
    if not str(src).strip():
        raise UserError("SRC must name a folder or an archive, got an empty path (it would read the current "
                        "folder)")
    src = Path(src)
    if not src.exists():
        raise UserError(f"SRC not found: {src}")
    if classes_file:
        read_class_file(classes_file)
    if split is None:
        return
    if split not in ("train", "val"):
        raise UserError(f"split must be 'train' or 'val', got {split!r}")
    # --split picks one of the official ILSVRC-2012 tars; anywhere else it would be silently ignored.
    given = {ILSVRC_TRAIN: "train", ILSVRC_VAL: "val"}.get(src.name) if src.is_file() else None
    if given is not None and split != given:
        raise UserError(f"--split {split} contradicts SRC {src.name} (the {given} split); give the folder "
                        "holding both tars, or the other tar")
    if labels_file is not None or (given is None and not (src.is_dir() and is_ilsvrc_folder(src, subdir))):
        raise UserError(f"--split applies only to the ILSVRC-2012 files ({ILSVRC_TRAIN}, {ILSVRC_VAL}); "
                        f"{src} is not one of them nor a folder holding them")


def is_ilsvrc_folder(src: Path, subdir: str | None) -> bool:
    """A folder holding the official ILSVRC-2012 tars (read as such unless ``subdir`` picks a folder)."""
    return subdir is None and ((src / ILSVRC_TRAIN).exists() or (src / ILSVRC_VAL).exists())


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None


def _class_index(names: Sequence[str], synsets: ClassFile | None, where: str) -> tuple[list[dict], dict]:
    """Classes and a folder name -> index map: the classes file's order, or the sorted names."""
    if synsets is not None:
        return synsets.match(names, where)
    classes = make_classes(sorted(set(names)))
    return classes, {c["wnid"]: c["index"] for c in classes}


def _open_folder(src: Path, synsets: ClassFile | None, subdir: str | None) -> Source:
    root = src / subdir if subdir else src
    if not root.is_dir():
        raise UserError(f"no folder {subdir!r} in {src}")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise UserError(f"cannot list {root}: {e.strerror or e}") from None
    class_dirs = [e.name for e in entries if e.is_dir() and not ignored_name(e.name)]
    loose = [e.name for e in entries if not e.is_dir() and not ignored_name(e.name)]
    if not class_dirs:
        if loose:
            raise UserError(f"{root} holds files but no class folders: give --labels FILE for a flat "
                            "folder of images")
        raise UserError(f"{root} is empty: expected one sub-folder per class")
    per_class: dict[str, list[str]] = {}
    direct_files = 0
    second_level: list[set[str]] = []
    # Directory symlinks are followed (class folders linked in from elsewhere are common), but no real
    # directory is listed twice: a link loop, or a link to a folder already listed, would add the same
    # images again (under the wrong class). What is left out is recorded in the settings (and meta.json).
    listed: set[str] = set()
    repeated: list[str] = []
    for name in class_dirs:
        files = []
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in listed:
                repeated.append(os.path.relpath(dirpath, root).replace(os.sep, "/"))
                dirnames[:] = []
                continue
            listed.add(real)
            dirnames[:] = sorted(d for d in dirnames if not ignored_name(d))
            rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
            files += [f"{rel}/{f}" for f in sorted(filenames) if not ignored_name(f)]
            if rel == name:
                direct_files += sum(1 for f in filenames if not ignored_name(f))
                second_level.append(set(dirnames))
        per_class[name] = files
    if not any(per_class.values()):
        raise UserError(f"no files found in the class folders of {root}")
    looks_like_splits = len(class_dirs) == 1 or any(
        a & b for i, a in enumerate(second_level) for b in second_level[i + 1:])
    if direct_files == 0 and looks_like_splits:
        # e.g. SRC=imagenette/ holding train/<wnid>/ and val/<wnid>/: those are splits, not classes.
        raise UserError(f"the sub-folders of {root} ({', '.join(class_dirs)}) hold folders, not images: "
                        f"point SRC at the folder whose sub-folders are the classes "
                        f"(e.g. {root / class_dirs[0]}, or --subdir {class_dirs[0]})")
    classes, index = _class_index(class_dirs, synsets, str(root))
    keys, labels = [], []
    for name in class_dirs:
        keys += per_class[name]
        labels += [index[name]] * len(per_class[name])
    settings: dict = {"subdir": subdir}
    if repeated:
        settings["folders_listed_already"] = repeated
    # Files beside the class folders belong to no class: found, and said to be skipped (not dropped unseen).
    skipped = [{"path": name, "reason": NOT_IN_CLASS_FOLDER} for name in loose]
    return Source("folder", str(root.resolve()), classes, keys, np.asarray(labels, np.int64), root=root,
                  settings=settings, skipped=skipped)


def _open_labels(src: Path, labels_file, synsets: ClassFile | None, subdir: str | None) -> Source:
    entries = read_label_list(labels_file)
    if synsets is None:
        classes = make_classes([str(i) for i in range(max(i for _, i in entries) + 1)])
    else:
        classes = synsets.by_id()
        bad = [(f, i) for f, i in entries if i >= len(classes)]
        if bad:
            raise UserError(f"labels file gives class {bad[0][1]} for {bad[0][0]!r} but the classes file "
                            f"has only {len(classes)} classes")
    keys = [f for f, _ in entries]
    labels = np.asarray([i for _, i in entries], np.int64)
    if src.is_dir():
        root = src / subdir if subdir else src
        return Source("labels", str(root.resolve()), classes, keys, labels, root=root,
                      settings={"subdir": subdir, "labels_file": str(Path(labels_file).resolve())})
    if src.is_file() and _is_tar(src):
        # A tar of a flat folder: files are matched by their path inside the archive, or by the name.
        listing = _list_tar(src)
        by_path = {}
        for n, member in enumerate(listing):
            name = member.name
            rel = name[len(subdir) + 1:] if subdir and name.startswith(subdir.rstrip("/") + "/") else name
            by_path.setdefault(rel, n)
            by_path.setdefault(rel.rsplit("/", 1)[-1], n)
        missing = [k for k in keys if k not in by_path]
        if missing:
            raise UserError(f"{len(missing)} files of the labels list are not in {src} (first: {missing[0]!r})")
        order = np.asarray([by_path[k] for k in keys], np.int64)
        return _tar_source("labels", src, classes, keys, labels, listing, order,
                           {"subdir": subdir, "labels_file": str(Path(labels_file).resolve())})
    raise UserError(f"with --labels, SRC must be a folder of images or a tar of one; got {src}")


def _is_compressed(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(6).startswith(_COMPRESSED_MAGIC)


class Member(NamedTuple):
    """A file of a tar as listed: its name and where its bytes are (for a link: its target's)."""

    name: str
    number: int  # the member holding the bytes, counting every member in archive order
    offset: int
    size: int
    problem: str | None = None  # why it cannot be read: a link that leads nowhere inside the archive
    folder: bool = False  # a symlink to a folder of the archive (its files are listed under that folder)


def _norm(name: str) -> str | None:
    """A member name or link target as the archive's own path, or None if it points outside the archive."""
    if name.startswith("/"):
        return None
    name = posixpath.normpath(name)
    return None if name == ".." or name.startswith("../") else name


def _list_tar(path: Path) -> list[Member]:
    """The files of a tar (regular files and links), in archive order. One pass, nothing extracted."""
    out: list[Member] = []
    links: dict[int, tuple[str, str | None]] = {}  # position in out -> (kind, target path in the archive)
    latest: dict[str, int] = {}  # archive path -> position in out of the last member of that name
    folders: set[str] = set()
    try:
        with tarfile.open(path, "r:*") as tf:
            for number, m in enumerate(tf):
                name = m.name[2:] if m.name.startswith("./") else m.name
                if m.isdir():
                    folders.add(posixpath.normpath(name))
                    continue
                if not (m.isreg() or m.islnk() or m.issym()):
                    continue  # devices, fifos: nothing to read
                if m.islnk():  # a hard link names an earlier member, by its path in the archive
                    target = _norm(m.linkname)
                    links[len(out)] = ("hard", target, latest.get(target) if target else None)
                elif m.issym():  # a symlink is relative to its own folder, and may point forward
                    target = None if m.linkname.startswith("/") else _norm(
                        posixpath.join(posixpath.dirname(name), m.linkname))
                    links[len(out)] = ("sym", target, None)
                latest[posixpath.normpath(name)] = len(out)
                out.append(Member(name, number, m.offset_data, m.size))
    except (OSError, tarfile.TarError, EOFError) as e:
        raise UserError(f"{path}: archive is damaged or truncated ({e})") from None
    # A folder is a folder member or a prefix of a member's path: looked up in the sorted paths when a
    # symlink's target is not a file (listing every prefix of every path costs the square of a path's
    # length: a hostile 268-byte archive took 1.5 GB so)
    paths = sorted(folders | {posixpath.normpath(m.name) for m in out})

    def is_folder(target: str) -> bool:
        i = bisect.bisect_left(paths, target + "/")
        return target in folders or (i < len(paths) and paths[i].startswith(target + "/"))

    return [_resolve(out, links, latest, is_folder, p) if p in links else m for p, m in enumerate(out)]


def _resolve(out: list[Member], links: dict, latest: dict[str, int], is_folder: Callable[[str], bool],
             p: int) -> Member:
    """Follow link ``p`` to the regular file it leads to, inside the archive and at most MAX_LINK_DEPTH
    links deep (tarfile.extractfile would follow a loop until Python's recursion limit)."""
    seen = set()
    q = p
    while q in links:
        kind, target, earlier = links[q]
        if target is None:
            return out[p]._replace(problem="link points outside the archive")
        if q in seen or len(seen) >= MAX_LINK_DEPTH:
            return out[p]._replace(problem="link loop (or a chain of more than "
                                           f"{MAX_LINK_DEPTH} links)")
        seen.add(q)
        nxt = earlier if kind == "hard" else latest.get(target)
        if nxt is None:
            if kind == "sym" and is_folder(target):
                return out[p]._replace(problem="link to a folder", folder=True)
            return out[p]._replace(problem=f"link target {target} is not in the archive")
        q = nxt
    return out[p]._replace(number=out[q].number, offset=out[q].offset, size=out[q].size)


def _tar_source(layout, path: Path, classes, keys, labels, listing: list[Member], order, settings) -> Source:
    """A Source over files ``order`` (positions in ``listing``) of ``path``, random-access if uncompressed.
    Links that lead nowhere inside the archive are found but skipped, with the reason."""
    skipped = [{"path": k, "reason": listing[p].problem} for k, p in zip(keys, order, strict=True) if listing[p].problem]
    if skipped:
        ok = np.asarray([not listing[p].problem for p in order], bool)
        keys, labels, order = [k for k, good in zip(keys, ok, strict=True) if good], labels[ok], order[ok]
    desc = str(path.resolve())
    if _is_compressed(path):
        # Read front to back: put the files in archive order, so that shards fill one after another
        # while the archive streams by (in any other order every shard would wait for the last bytes).
        numbers = np.asarray([listing[p].number for p in order], np.int64)
        perm = np.argsort(numbers, kind="stable")
        keys, labels, numbers = [keys[i] for i in perm], labels[perm], numbers[perm]
        return Source(layout, desc, classes, keys, labels, stream=path, member_index=numbers,
                      settings=settings, skipped=skipped)
    offsets = np.asarray([listing[p].offset for p in order], np.int64)
    lengths = np.asarray([listing[p].size for p in order], np.int64)
    return Source(layout, desc, classes, keys, labels, archive=path, offsets=offsets, lengths=lengths,
                  settings=settings, skipped=skipped)


def _open_tar(path: Path, synsets: ClassFile | None, subdir: str | None) -> Source:
    listing = _list_tar(path)
    prefix = subdir.strip("/") + "/" if subdir else ""
    files = []  # (position in listing, path parts under SUBDIR)
    folder_links = []  # keys of symlinks to folders
    for n, member in enumerate(listing):
        if ignored_name(member.name) or not member.name.startswith(prefix):
            continue
        key = member.name[len(prefix):]
        if member.folder:
            folder_links.append(key)
        else:
            files.append((n, key.split("/")))
    root = _tar_class_root([parts for _, parts in files]) if not subdir else []
    # As a folder is read (_open_folder): a class is a folder in ROOT, with every file under it (nested
    # folders too); files directly in ROOT, or outside it, belong to no class.
    picked = []  # (position in listing, key under ROOT, class name)
    loose = []  # keys of the files in no class folder
    direct, inner = 0, {}  # files directly in a class folder; each class's sub-folders
    for n, parts in files:
        rel = parts[len(root):] if parts[:len(root)] == root else []
        if len(rel) < 2:
            loose.append("/".join(parts))
            continue
        picked.append((n, "/".join(rel), rel[0]))
        direct += len(rel) == 2
        inner.setdefault(rel[0], set()).update(rel[1:2] if len(rel) > 2 else ())
    where = f"{path}" + (f" under {subdir!r}" if subdir else "")
    if not picked:
        raise UserError(f"no class folders with files found in {where}")
    sub = list(inner.values())
    if not subdir and direct == 0 and (len(inner) == 1 or any(a & b for i, a in enumerate(sub) for b in sub[i + 1:])):
        # e.g. imagenette/train/<wnid>/ and imagenette/val/<wnid>/: splits, not classes
        first = "/".join([*root, sorted(inner)[0]])
        raise UserError(f"{where} holds class folders in more than one place (the folders in "
                        f"{'/'.join(root) or 'its top'}: {', '.join(sorted(inner)[:4])} hold folders, not "
                        f"images); pick one with --subdir (e.g. --subdir {first})")
    if root:
        top = "/".join(root) + "/"
        folder_links = [k[len(top):] for k in folder_links if k.startswith(top)]
    # Same order as a folder: classes sorted, then paths sorted (a compressed archive is then read in
    # its own order; see _tar_source).
    picked.sort(key=lambda t: (t[2], t[1]))
    classes, index = _class_index([cls for _, _, cls in picked], synsets, str(path))
    keys = [key for _, key, _ in picked]
    labels = np.asarray([index[cls] for _, _, cls in picked], np.int64)
    order = np.asarray([n for n, _, _ in picked], np.int64)
    settings: dict = {"subdir": subdir}
    if folder_links:
        # A symlink to a folder is not followed: that folder's files are listed under its own name, as
        # the folder source lists a folder reached again through a link once; recorded the same way.
        settings["folders_listed_already"] = sorted(folder_links)
    source = _tar_source("tar", path, classes, keys, labels, listing, order, settings)
    source.skipped = [{"path": key, "reason": NOT_IN_CLASS_FOLDER} for key in sorted(loose)] + source.skipped
    return source


def _tar_class_root(files: list[list[str]]) -> list[str]:
    """The folder of class folders of an archive (path parts): the deepest folder holding every file below
    the archive's top (a wrapper folder such as ``imagenette/train/``, as ``tar czf set.tar.gz set``
    makes), one level up where that folder holds the files themselves (it is then their class)."""
    parents = [parts[:-1] for parts in files if len(parts) >= 2]
    if not parents:
        return []
    root = parents[0]
    for p in parents[1:]:
        k = 0
        while k < min(len(root), len(p)) and root[k] == p[k]:
            k += 1
        root = root[:k]
    if all(len(p) == len(root) for p in parents):
        root = root[:-1]
    return root


# --------------------------------------------------------------------------- ILSVRC-2012

def read_ilsvrc_devkit(devkit: Path) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """``(wnid_to_classes, val_wnids)`` parsed by torchvision's own ImageNet devkit parser.

    A ``meta.bin`` beside the devkit (torchvision's cache, written by ``torchvision.datasets.ImageNet``)
    is used if present. Otherwise the devkit is parsed in a temporary folder, so SRC may be read-only.
    """
    from torchvision.datasets import imagenet as tv_imagenet

    if (devkit.parent / tv_imagenet.META_FILE).is_file():
        try:
            return tv_imagenet.load_meta_file(str(devkit.parent))
        except Exception:  # a stale or foreign meta.bin: parse the devkit instead
            pass
    if not devkit.is_file():
        raise UserError(f"{devkit.name} not found beside the ILSVRC-2012 images in {devkit.parent}")
    try:
        import scipy.io  # noqa: F401  (torchvision's parser reads meta.mat with it)
    except ImportError:
        raise UserError("reading the ILSVRC-2012 devkit needs scipy: pip install 'alexnet[imagenet]'") from None
    with tempfile.TemporaryDirectory(prefix="alexnet-devkit-") as tmp:
        os.symlink(devkit.resolve(), os.path.join(tmp, ILSVRC_DEVKIT))
        try:
            tv_imagenet.parse_devkit_archive(tmp, ILSVRC_DEVKIT)
        except RuntimeError as e:  # torchvision's MD5 check of the official file
            raise UserError(f"{devkit}: {str(e).splitlines()[0]}") from None
        except (OSError, KeyError, ValueError, tarfile.TarError) as e:
            raise UserError(f"{devkit}: not a readable ILSVRC-2012 devkit ({e})") from None
        return tv_imagenet.load_meta_file(tmp)


def _open_ilsvrc(folder: Path, tar: Path, synsets: ClassFile | None, split: str) -> Source:
    wnid_to_classes, val_wnids = read_ilsvrc_devkit(folder / ILSVRC_DEVKIT)
    # torchvision.datasets.ImageNet: classes are the sorted WNIDs (ImageFolder over wnid folders), and
    # the i-th validation image in sorted file-name order has label val_wnids[i].
    if synsets is None:
        classes = [{"index": i, "wnid": w, "name": ", ".join(wnid_to_classes[w])}
                   for i, w in enumerate(sorted(wnid_to_classes))]
    else:
        classes = synsets.by_id()
    index = {c["wnid"]: c["index"] for c in classes}
    keys, labels, offsets, lengths = [], [], [], []
    try:
        with tarfile.open(tar, "r:") as outer:
            if split == "train":  # a tar of 1000 per-class tars: n01440764.tar, ...
                members = sorted((m for m in outer if m.isreg()), key=lambda m: m.name)
                for m in members:
                    wnid = Path(m.name).name.removesuffix(".tar")
                    if wnid not in index:
                        raise UserError(f"{tar}: class {wnid} is not in the class list")
                    with tarfile.open(fileobj=outer.extractfile(m), mode="r:") as inner:
                        files = sorted((im for im in inner if im.isreg() and not ignored_name(im.name)),
                                       key=lambda im: im.name)
                    for im in files:
                        keys.append(f"{wnid}/{im.name}")
                        labels.append(index[wnid])
                        offsets.append(m.offset_data + im.offset_data)
                        lengths.append(im.size)
            else:  # 50,000 flat JPEGs, labelled by sorted name
                members = sorted((m for m in outer if m.isreg() and not ignored_name(m.name)),
                                 key=lambda m: m.name)
                if len(members) != len(val_wnids):
                    raise UserError(f"{tar} holds {len(members)} images but the devkit labels "
                                    f"{len(val_wnids)}")
                for m, wnid in zip(members, val_wnids, strict=True):
                    if wnid not in index:
                        raise UserError(f"devkit class {wnid} is not in the class list")
                    keys.append(m.name)
                    labels.append(index[wnid])
                    offsets.append(m.offset_data)
                    lengths.append(m.size)
    except (OSError, tarfile.TarError, EOFError) as e:
        raise UserError(f"{tar}: archive is damaged or truncated ({e})") from None
    if not keys:
        raise UserError(f"no images found in {tar}")
    return Source("ilsvrc2012", f"{tar.resolve()} (ILSVRC-2012 {split})", classes, keys,
                  np.asarray(labels, np.int64), archive=tar, offsets=np.asarray(offsets, np.int64),
                  lengths=np.asarray(lengths, np.int64), settings={"split": split})
