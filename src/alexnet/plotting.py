"""Shared matplotlib plumbing for every figure the package draws (kernels, predictions, curves, reports)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path


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
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, **savefig_kwargs)
    pyplot().close(fig)
    return out


def png_bytes(fig, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (and close it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()
