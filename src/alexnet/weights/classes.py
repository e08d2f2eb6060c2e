"""Class lists: the 1000 ILSVRC-2012 classes shipped with the package, reading class files, and
matching a dataset's classes to a model's.

A class is a dict ``{"index": i, "wnid": "n01440764", "name": "tench"}`` everywhere in the package (weights
metadata, prepared datasets, predictions). ``name`` is the first synonym of the WordNet synset
("tench, Tinca tinca" -> "tench"); ``wnid`` may be None for datasets without WordNet ids (CIFAR-10).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from alexnet.errors import UserError

_WNID = re.compile(r"^n\d{8}$")


def parse_class_lines(lines) -> list[dict]:
    """Lines of ``synset_words.txt`` (``n01440764 tench, Tinca tinca``), of bare WNIDs, or of bare names,
    in class-index order; blank lines are skipped."""
    classes = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        first, _, rest = line.partition(" ")
        if _WNID.match(first):
            name = rest.split(",")[0].strip() or first
            classes.append({"index": len(classes), "wnid": first, "name": name})
        else:
            classes.append({"index": len(classes), "wnid": None, "name": line})
    return classes


@lru_cache(maxsize=1)
def _imagenet_classes() -> tuple[dict, ...]:
    text = resources.files("alexnet.weights").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    classes = parse_class_lines(text.splitlines())
    assert len(classes) == 1000, "imagenet_classes.txt must hold the 1000 ILSVRC-2012 classes"
    return tuple(classes)


def imagenet_classes() -> list[dict]:
    """The 1000 ILSVRC-2012 classes in index order (index = position in the sorted WNIDs)."""
    return [dict(c) for c in _imagenet_classes()]


def read_class_file(path: str | os.PathLike) -> list[dict]:
    """A class list file: synset_words format, one WNID per line, or one name per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read class list {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UserError(f"class list {path} is not text (UTF-8)") from None
    classes = parse_class_lines(text.splitlines())
    if not classes:
        raise UserError(f"class list {path} is empty")
    return classes


def default_classes(num_classes: int) -> list[dict]:
    """ImageNet's classes for a 1000-class model, ``class_0 ...`` placeholders otherwise."""
    if num_classes == 1000:
        return imagenet_classes()
    return [{"index": i, "wnid": None, "name": f"class_{i}"} for i in range(num_classes)]


def _key(c: dict) -> str:
    return c.get("wnid") or str(c.get("name", "")).lower()


def match_classes(data_classes: list[dict], model_classes: list[dict], num_model_outputs: int,
                  *, what: str = "dataset", against: str = "model") -> list[int]:
    """For each class of the data, the model output that means the same class.

    - The same classes (by WNID, else by name) in the same order, or a model without class names and
      as many outputs as the data has classes: the identity.
    - The data's classes a subset of the model's (Imagenette's 10 ImageNet classes against a 1000-class
      model): each is mapped to the model's index of the same WNID/name.
    - Anything else is a :class:`UserError` naming the first classes that do not match.
    """
    n = len(data_classes)
    if not model_classes:
        if n == num_model_outputs:
            return list(range(n))
        raise UserError(f"the {what} has {n} classes but the model has {num_model_outputs} outputs "
                        "and no class names to match them by")
    if [_key(c) for c in data_classes] == [_key(c) for c in model_classes]:
        return list(range(n))
    index = {}
    for c in model_classes:
        index.setdefault(_key(c), int(c["index"]))
        if c.get("name"):
            index.setdefault(str(c["name"]).lower(), int(c["index"]))
    mapping, missing = [], []
    for c in data_classes:
        j = index.get(_key(c))
        if j is None and c.get("name"):
            j = index.get(str(c["name"]).lower())
        if j is None:
            missing.append(c.get("wnid") or c.get("name"))
        mapping.append(j)
    if missing:
        def some(names) -> str:
            names = [str(v) for v in names]
            return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")

        raise UserError(f"the {what}'s {n} classes do not match the {against}'s {len(model_classes)}: "
                        f"{len(missing)} of the {what}'s ({some(missing)}) are not among the {against}'s "
                        f"({some(c.get('wnid') or c.get('name') for c in model_classes)})")
    if len(set(mapping)) != n:
        raise UserError(f"the {what}'s classes map onto the {against}'s classes more than once")
    return mapping
