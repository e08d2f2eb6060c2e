"""Helpers shared by the subcommands: one-line errors, option parsing, table printing, and the flags every
subcommand spells the same way: ``--device`` (default ``auto``: CUDA when available), ``--threads`` (torch's
operator threads) and, where data is read in parallel, ``--workers`` (loader/prepare parallelism)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from alexnet.errors import UserError
from alexnet.files import check_writable


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``alexnet train: error: ...`` and exit code 2, no usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


MAX_THREADS = 4096  # torch.set_num_threads(100000) crashes the process; no machine has that many cores


def int_in(low: int, high: int | None = None):
    """An argparse ``type``: a whole number in ``low..high`` (no upper bound when ``high`` is None), else
    the usual one-line usage error (``argument --batch-size: must be at least 1, got 0``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            want = f"at least {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {want}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def output_path(*suffixes: str):
    """An argparse ``type`` for a file to write: not empty, and (when ``suffixes`` are given) ending in one
    of them, so that a typo is refused before the work rather than after it."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("must not be empty")
        if suffixes and not text.lower().endswith(suffixes):
            raise argparse.ArgumentTypeError(f"must end in {' or '.join(suffixes)}, got {text!r}")
        try:
            check_writable(text)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    parse.__name__ = "path"
    return parse


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")  # what the plots can be saved as


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


# The same words as the config dataclasses' ``device`` field give their generated --device.
DEVICE_HELP = "auto (CUDA when available, else the CPU), cpu, cuda, cuda:N or mps. Default: auto."


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_threads_arg(parser: argparse.ArgumentParser, default: str = "torch's choice") -> None:
    parser.add_argument("--threads", type=int_in(1, MAX_THREADS), default=None, metavar="N",
                        help=f"CPU threads for torch's operators (torch.set_num_threads; default: {default}; 1 is "
                             "often fastest on a small, busy CPU)")


def set_threads(n: int | None) -> None:
    """Apply ``--threads``: torch's operator threads, in this process and (OMP_NUM_THREADS, which the
    trainer leaves alone when set) in what it starts."""
    if n is None:
        return
    if n < 1:
        raise UserError(f"--threads must be at least 1, got {n}")

    import torch

    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the experiment is, as SIGINT raises KeyboardInterrupt."""

    signal = "SIGTERM"


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM (a scheduler's stop, ``kill``) stops the command as Ctrl-C does (a KeyboardInterrupt whose
    ``signal`` is "SIGTERM"), so that it too ends saying what is kept and how to continue (the trainer, inside
    the experiments, handles both signals itself)."""
    if threading.current_thread() is not threading.main_thread():  # handlers only from the main thread
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
