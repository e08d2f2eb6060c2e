"""Shared matplotlib plumbing for every figure the package draws (kernels, predictions, curves, reports)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from alexnet.files import write_atomic


def pyplot():
    """``matplotlib.pyplot``, on the headless Agg backend unless the caller already chose one.

    A user who imported pyplot first (e.g. in a notebook) keeps their backend; savefig works on any.
    """
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str | os.PathLike, **savefig_kwargs) -> Path:
    """Write ``fig`` to ``out`` (creating its folder), close it, and return the path."""
    out = Path(out)
    buf = io.BytesIO()  # rendered in memory, then written complete or not at all
    fig.savefig(buf, format=savefig_kwargs.pop("format", out.suffix.lstrip(".") or "png"), **savefig_kwargs)
    pyplot().close(fig)
    return write_atomic(out, buf.getvalue())


def png_bytes(fig, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (and close it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()
