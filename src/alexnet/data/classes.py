"""Class lists: classes files (``<wnid> <name>``, ``<id><TAB><name>`` or a name per line; line i = class i)
and Caffe-style label lists.

A class is a plain dict ``{"index": int, "wnid": str, "name": str}`` so that it goes into ``meta.json``
(and weights files, predictions) unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alexnet.errors import UserError


def make_classes(names: Sequence[str] | Sequence[dict]) -> list[dict]:
    """Normalise a list of class names (or of class dicts) to ``[{index, wnid, name}, ...]``.

    A plain string is used as both wnid and name (sorted folder names, CIFAR class names).
    """
    classes = []
    for i, c in enumerate(names):
        if isinstance(c, dict):
            wnid = str(c.get("wnid", c.get("name", i)))
            classes.append({"index": i, "wnid": wnid, "name": str(c.get("name", wnid))})
        else:
            classes.append({"index": i, "wnid": str(c), "name": str(c)})
    return classes


def read_synsets(path: str | Path) -> list[dict]:
    """Read a synset list like ``synset_words.txt``: ``<wnid> <name>`` per line, line i = class i.

    The name is optional (a bare wnid list works too). Blank lines at the end are ignored; a blank line
    in the middle is an error, because it would shift every later class index.
    """
    return read_class_file(path).by_id()


@dataclass
class ClassFile:
    """A classes file as read: one class per line (line i = class i), each line split into an id and a
    name, at its tab if it has one (``id<TAB>name``), else at its first space (``n01440764 tench, ...``).

    Which reading is meant shows only when class folders are looked up in it (:meth:`match`): a file of
    plain class names with spaces (``chain saw``) is then read one name per line.
    """

    path: Path
    lines: list[str]  # each line, stripped
    ids: list[str]
    names: list[str]  # "" where the line has no name part

    def by_id(self) -> list[dict]:
        """The classes as ``<id> <name>`` lines (the synset_words.txt reading)."""
        self._unique(self.ids)
        return [{"index": i, "wnid": w, "name": n or w} for i, (w, n) in enumerate(zip(self.ids, self.names, strict=True))]

    def by_line(self) -> list[dict]:
        """The classes as one name per line (names may hold spaces)."""
        self._unique(self.lines)
        return [{"index": i, "wnid": line, "name": line} for i, line in enumerate(self.lines)]

    def _unique(self, keys: list[str]) -> None:
        """A class listed twice would give two indices to one folder: refused, naming both lines."""
        seen: dict[str, int] = {}
        for lineno, key in enumerate(keys, 1):
            if key in seen:
                raise UserError(f"{self.path}:{lineno}: {key!r} already listed on line {seen[key]}")
            seen[key] = lineno

    def match(self, folders: Sequence[str], where: str) -> tuple[list[dict], dict[str, int]]:
        """Classes and a folder name -> class index map for the class folders ``folders``.

        Every folder an id: the ``<id> <name>`` reading, as always. Every folder a whole line: one class
        name per line. Otherwise each folder is looked up by id, then whole line, then name (a name that
        two lines share matches neither). A folder found nowhere is an error showing what was read.
        """
        wanted = set(folders)
        if wanted <= set(self.ids) and (len(set(self.ids)) == len(self.ids) or not wanted <= set(self.lines)):
            classes = self.by_id()
            return classes, {c["wnid"]: c["index"] for c in classes}
        if wanted <= set(self.lines):
            classes = self.by_line()
            return classes, {c["wnid"]: c["index"] for c in classes}
        by_name: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            by_name.setdefault(name, []).append(i)
        lookup = {**{n: i[0] for n, i in by_name.items() if len(i) == 1 and n},
                  **{line: i for i, line in enumerate(self.lines)}, **{w: i for i, w in enumerate(self.ids)}}
        unknown = sorted(wanted - lookup.keys())
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            read = "; ".join(f"id {w!r}" + (f" name {n!r}" if n else "")
                             for w, n in zip(self.ids[:3], self.names[:3], strict=True))
            raise UserError(f"class folder(s) {shown} in {where} are not in the classes file {self.path} "
                            f"(its {len(self.lines)} lines read as: {read}"
                            f"{'; ...' if len(self.lines) > 3 else ''})")
        mapping = {f: lookup[f] for f in wanted}
        taken: dict[int, str] = {}
        for f in sorted(wanted):  # two folders read as one class would merge their images silently
            if mapping[f] in taken:
                raise UserError(f"class folders {taken[mapping[f]]!r} and {f!r} in {where} both match line "
                                f"{mapping[f] + 1} of the classes file {self.path}: rename one, or list it")
            taken[mapping[f]] = f
        return self.by_id(), mapping


def read_class_file(path: str | Path) -> ClassFile:
    """Read a classes file (see :class:`ClassFile`); a UTF-8 byte order mark is dropped."""
    path = Path(path)
    try:
        # utf-8-sig: Windows editors start a UTF-8 file with a BOM, which would stick to the first id
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise UserError(f"classes file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read classes file {path}: {e}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    ids, names = [], []
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            raise UserError(f"{path}:{lineno}: empty line (line i must be class i)")
        wnid, _, name = line.partition("\t" if "\t" in line else " ")
        ids.append(wnid.strip())
        names.append(name.strip())
    if not ids:
        raise UserError(f"classes file {path} lists no classes")
    return ClassFile(path, [line.strip() for line in lines], ids, names)


def read_label_list(path: str | Path) -> list[tuple[str, int]]:
    """Read a Caffe-style label list: ``<file> <class index>`` per line (the file name may hold spaces)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read labels file {path}: {e}") from None
    entries = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, label = line.strip().rpartition(" ")
        try:
            index = int(label)
        except ValueError:
            index = -1
        if not name.strip() or index < 0:
            raise UserError(f"{path}:{lineno}: expected '<file> <class index>', got {line.strip()!r}")
        entries.append((name.strip(), index))
    if not entries:
        raise UserError(f"labels file {path} lists no files")
    return entries
