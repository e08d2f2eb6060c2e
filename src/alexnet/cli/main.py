"""``alexnet`` console script: dispatches to one module per subcommand (``alexnet.cli.<name>``).

Each module defines ``register(subparsers)`` which adds its parser and sets ``func(args) -> int``.
User mistakes raise :class:`alexnet.errors.UserError` and are printed here as one line; so is any other
error (exit code 1), whose traceback ``ALEXNET_DEBUG=1`` shows.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from alexnet import __version__
from alexnet.cli.common import ArgumentParser, fail
from alexnet.errors import UserError

# Subcommands, in the order `alexnet --help` lists them.
COMMANDS = ["models", "info", "prepare", "train", "evaluate", "predict", "kernels", "features", "neighbors", "convert", "export", "experiment", "report"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="alexnet",
        description="AlexNet (Krizhevsky, Sutskever & Hinton, 2012): the paper's network, data, training, "
                    "evaluation and tools.")
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS:
        importlib.import_module(f"alexnet.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports the commands, and with them torch: seconds
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("alexnet: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # a usage error (one line printed, 2), --help or --version (0): returned like the rest
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    if not getattr(args, "func", None):  # no command: the list of commands, and a usage error's exit code
        parser.print_help(sys.stderr)
        return 2
    prog = f"alexnet {args.command}"
    try:
        from alexnet.data.images import max_image_pixels

        max_image_pixels()  # a bad ALEXNET_MAX_IMAGE_PIXELS: one line now, not a reason on every image later
        return int(args.func(args) or 0)
    except UserError as e:
        return fail(prog, str(e))
    except FileNotFoundError as e:
        return fail(prog, f"no such file: {e.filename or e}")
    except OSError as e:  # unwritable, full, a file where a folder belongs...: the machine's answer, one line
        where = f": {e.filename}" if e.filename else ""
        return fail(prog, f"{e.strerror or type(e).__name__}{where}")
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # what no check foresaw: still one line; the traceback on request
        if os.environ.get("ALEXNET_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return fail(prog, f"{type(e).__name__}{': ' + first if first else ''} (unexpected: ALEXNET_DEBUG=1 "
                          "shows where; please report it)", code=1)


if __name__ == "__main__":
    raise SystemExit(main())
