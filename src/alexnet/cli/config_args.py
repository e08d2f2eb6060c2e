"""Command-line flags generated from a config dataclass: one description, one default, one type.

Field ``batch_size`` becomes ``--batch-size``: its help is the field's attribute docstring (the string
literal under it, the text IDEs and Sphinx show; reST markup dropped, other fields named as their flags),
followed by the dataclass default; its type comes from the annotation (``int``, ``float``, ``str``,
``bool`` as ``--x/--no-x``, ``tuple[float, ...]``/``list[str]`` as comma-separated values, each
optionally ``| None``). A field without a default is a required flag.

A generated flag's own argparse default is None, "not given": the caller builds the config from the
flags given (:func:`given`), so a default lives in the dataclass only, and a config file or another
recipe (the demo's) can show through. The same approach as simple-parsing and tyro, in a few lines.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping, Sequence


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def flag_words(name: str, value) -> list[str]:
    """A field's value as the generated flags take it: ``["--epochs", "12"]``, ``["--no-lrn"]``,
    ``["--lrs", "0.01,0.03"]`` (for a command that repeats a run's settings)."""
    if isinstance(value, bool):
        return [flag(name) if value else "--no-" + flag(name)[2:]]
    if isinstance(value, (tuple, list)):
        return [flag(name), ",".join(str(v) for v in value)]
    return [flag(name), str(value)]


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of a dataclass (and its dataclass bases), as written in the source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body  # type: ignore[attr-defined]
        except (OSError, TypeError):  # no source (a frozen build): flags without descriptions
            continue
        for node, after in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def field_help(cls: type, name: str) -> str:
    """The description of field ``name`` for a command line: one line, no reST, fields named as flags,
    None as "not given"."""
    names = {f.name for f in dataclasses.fields(cls)}
    text = field_docs(cls).get(name, "")
    text = re.sub(r":\w+:`~?([\w.]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)  # :func:`a.b` -> b
    text = re.sub(r"``(.+?)``", lambda m: flag(m.group(1)) if m.group(1) in names else m.group(1), text)
    text = re.sub(r"\bNone\b", "not given", text)  # what a None field is on a command line
    return " ".join(text.split())


def show(value) -> str:
    """A default as typed on a command line: ``on``/``off``, ``a,b,c``, ``0.0005``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(show(v) for v in value)
    return str(value)


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _comma_list(kind: type, container: type):
    what = {float: "numbers", int: "integers", str: "names"}[kind]

    def parse(text: str):
        parts = [v.strip() for v in text.split(",")]
        if not any(parts):
            raise argparse.ArgumentTypeError(f"expected at least one of comma-separated {what}")
        if not all(parts):  # "0.01,,0.1": a typo to say, not to drop
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got an empty entry in {text!r}")
        try:
            return container(kind(v) for v in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None

    return parse


def _argparse_kwargs(hint) -> dict:
    """``type=`` / ``action=`` for a field annotation (``X | None`` as ``X``: None is "not given")."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (hint,) = [a for a in args if a is not type(None)]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in (int, float, str):
        return {"type": hint}
    if origin in (tuple, list) and args and args[0] in (int, float, str):
        return {"type": _comma_list(args[0], origin)}
    raise TypeError(f"no command-line form for a field of type {hint!r}")


def add_config_args(parser: argparse.ArgumentParser, cls: type, names: Iterable[str], *,
                    metavars: Mapping[str, str] | None = None,
                    also: Mapping[str, Mapping[str, object]] | None = None,
                    aliases: Mapping[str, str] | None = None,
                    optional: Mapping[str, str] | None = None) -> list[str]:
    """Add a flag for each field of ``cls`` in ``names``; returns the names (the ``dest`` of each flag).

    ``also``: other recipes whose defaults the help names where they differ, e.g. ``{"the demo": {...}}``.
    ``aliases``: a second flag for a field (``{"val_fraction": "--val-split"}``: the name another command
    uses for the same thing).
    ``optional``: fields without a default whose flag the command checks itself, with the words the help
    adds (``{"epochs": "Required, except with --resume (the earlier run's)"}``).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    names = list(names)
    for name in names:
        f = fields[name]
        default = _default(f)
        # The default, unless None (the docstring says what not giving it means): "Default: 90; the demo: 4."
        shown = [] if default in (None, dataclasses.MISSING) else [f"Default: {show(default)}"]
        shown += [f"{label}: {show(recipe[name])}" for label, recipe in (also or {}).items()
                  if name in recipe and recipe[name] != default]
        text = field_help(cls, name).rstrip(".") + "."
        if shown:
            text += " " + "; ".join(shown)[0].upper() + "; ".join(shown)[1:] + "."
        if optional and name in optional:
            text += f" {optional[name].rstrip('.')}."
        spelled = [flag(name)] + ([aliases[name]] if aliases and name in aliases else [])
        parser.add_argument(*spelled, dest=name, default=None,
                            required=default is dataclasses.MISSING and name not in (optional or {}),
                            metavar=(metavars or {}).get(name), help=text.replace("%", "%%"),
                            **_argparse_kwargs(hints[name]))
    return names


def given(args: argparse.Namespace, names: Sequence[str]) -> dict:
    """The fields among ``names`` given on the command line (a flag not given is None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
