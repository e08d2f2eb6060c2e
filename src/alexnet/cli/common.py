"""Helpers shared by the subcommands: one-line errors, option parsing, table printing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alexnet.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``alexnet train: error: ...`` and exit code 2, no usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def parse_value(text: str):
    """'true' -> True, '3' -> 3, '0.5' -> 0.5, anything else stays a string."""
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_options(items: Sequence[str] | None) -> dict:
    """``["lrn=false", "towers=1"]`` -> ``{"lrn": False, "towers": 1}``."""
    options = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"model option must look like NAME=VALUE, got {item!r}")
        options[key.strip().replace("-", "_")] = parse_value(value.strip())
    return options


def add_model_options_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--opt", dest="model_options", action="append", metavar="NAME=VALUE",
                        help="a model option, e.g. --opt lrn=false --opt towers=1 (repeatable)")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A plain text table; ``align`` is one of 'l'/'r' per column (default: text left, numbers right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l"
                        for i in range(len(headers)))
    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align, strict=True)).rstrip()
    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def fail(prog: str, message: str, code: int = 2) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code
