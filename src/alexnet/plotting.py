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


def short_class_name(name: str) -> str:
    """The first name of a WordNet synonym list (``"church, church building"`` -> ``"church"``): the one
    a reader knows the class by, short enough for a plot. Every figure that names classes uses it."""
    first = str(name).split(",")[0].strip()
    return first or str(name).strip()


def clip_label(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: cut at the end with an ellipsis when longer (a single long
    word too, where ``textwrap.shorten`` would leave only the ellipsis)."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:max(width - 1, 1)].rstrip(" ,-_") + "\u2026"


def text_width_inches(fig, texts, fontsize: float, **font) -> float:
    """The width in inches of the widest of ``texts`` drawn in ``fig`` at ``fontsize`` points (0 when none):
    what a layout must leave for labels, measured with the figure's own renderer and fonts."""
    renderer = fig.canvas.get_renderer()
    widest = 0.0
    for s in texts:
        t = fig.text(0, 0, s, fontsize=fontsize, **font)
        widest = max(widest, t.get_window_extent(renderer).width / fig.dpi)
        t.remove()
    return widest
