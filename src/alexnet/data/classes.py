"""Class lists: synset files (``<wnid> <name>`` per line, line i = class i) and Caffe-style label lists.

A class is a plain dict ``{"index": int, "wnid": str, "name": str}`` so that it goes into ``meta.json``
(and weights files, predictions) unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"classes file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read classes file {path}: {e}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    classes, seen = [], {}
    for lineno, line in enumerate(lines, 1):
        wnid, _, name = line.strip().partition(" ")
        if not wnid:
            raise UserError(f"{path}:{lineno}: empty line (line i must be class i)")
        if wnid in seen:
            raise UserError(f"{path}:{lineno}: {wnid!r} already listed on line {seen[wnid]}")
        seen[wnid] = lineno
        classes.append({"index": lineno - 1, "wnid": wnid, "name": name.strip() or wnid})
    if not classes:
        raise UserError(f"classes file {path} lists no classes")
    return classes


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
