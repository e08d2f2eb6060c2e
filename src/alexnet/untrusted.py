"""Checks on structures read from files a user gives (configs, checkpoints, records): bounded before use.

YAML aliases and pickled shared references let a file of a few hundred bytes stand for a structure of
billions of items ("billion laughs"): anything that walks it (a repr, a JSON dump, a type check) then
takes minutes and gigabytes. :func:`check_bounded` walks such a structure once, counting every item as often
as it is reached and stopping at the limit; :func:`load_yaml` refuses aliases outright (no config needs them).
"""

from __future__ import annotations

from alexnet.errors import UserError

MAX_ITEMS = 1_000_000  # a checkpoint of 10,000 epochs' history holds about 150,000
MAX_DEPTH = 64


def repeats_one_value(t) -> bool:
    """A tensor that repeats one stored value along a dimension (stride 0, as ``torch.expand`` makes): a few
    bytes of file declaring gigabytes; nothing trained or saved by this project looks so."""
    return any(stride == 0 and size > 1 for stride, size in zip(t.stride(), t.shape, strict=True))


def check_bounded(value, what: str, *, max_items: int = MAX_ITEMS, max_depth: int = MAX_DEPTH) -> None:
    """Refuse (one-line UserError naming ``what``) a nested structure of dicts, lists and tuples with more
    than ``max_items`` items in all, nested deeper than ``max_depth``, or holding a tensor that repeats one
    stored value (stride 0: a few bytes declaring gigabytes)."""
    import torch

    stack, seen = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > max_items:
            raise UserError(f"{what}: more than {max_items:,} values nested in it (aliases or shared "
                            "references repeated over and over?): refused")
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = list(item)
        else:
            if isinstance(item, torch.Tensor) and repeats_one_value(item):
                raise UserError(f"{what}: a tensor repeats one stored value along a dimension (stride 0): "
                                "refused")
            continue
        if children and depth >= max_depth:
            raise UserError(f"{what}: nested more than {max_depth} levels deep: refused")
        if len(children) > max_items:
            raise UserError(f"{what}: more than {max_items:,} values nested in it: refused")
        stack.extend((c, depth + 1) for c in children)


def load_yaml(text: str, what: str):
    """``yaml.safe_load(text)``, refusing aliases (``*name``: what makes a billion-laughs file) and a
    structure over :func:`check_bounded`'s limits. YAML errors propagate (the caller words them)."""
    import yaml

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise UserError(f"{what}: YAML aliases (*{event.anchor}) are not accepted here")
        value = yaml.safe_load(text)
    except RecursionError:
        raise UserError(f"{what}: nested more than {MAX_DEPTH} levels deep: refused") from None
    check_bounded(value, what, max_items=100_000)
    return value
