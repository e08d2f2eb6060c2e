"""The paper's Figure 4 (left): test images, each with its five most probable labels as bars.

As in the paper, the correct label (when known) is written under the image and its bar, if it is among
the five, is drawn in red; the other bars are blue.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alexnet.evaluation.predict import Prediction
from alexnet.plotting import pyplot, save_figure

_WNID = re.compile(r"n\d{8}")
PLOT_LIMIT = 32
"""The most images ``alexnet predict --plot`` draws unless told otherwise: 4 rows of 8, a 2000 px wide
PNG of a few hundred KB in which every label can still be read. Each image takes a 290 x 430 px cell
(110 dpi), so 200 images would be a 10 MB page no one scrolls through: the text and JSON cover them all."""
MAX_COLUMNS = 8


def guess_label(path: str, classes: Sequence[dict]) -> int | None:
    """The class of an image when its folder or file name starts with a WNID of ``classes``
    (ImageNet's ``<wnid>/<wnid>_123.JPEG`` layout), else None."""
    by_wnid = {c.get("wnid"): int(c["index"]) for c in classes if c.get("wnid")}
    p = Path(path)
    for part in (p.parent.name, p.name):
        m = _WNID.match(part)
        if m and m.group(0) in by_wnid:
            return by_wnid[m.group(0)]
    return None


def _short(name: str, width: int = 22) -> str:
    return textwrap.shorten(str(name), width=width, placeholder="…")


def plot_predictions(images: Sequence[np.ndarray], predictions: Sequence[Prediction], out: str | os.PathLike,
                     *, labels: Sequence[int | None] | None = None, classes: Sequence[dict] | None = None,
                     columns: int | None = None, title: str | None = None) -> Path:
    """Draw images (uint8 HWC) with their top-5 bars to ``out`` (PNG); returns the path.

    Every image given is drawn, in rows of ``columns`` (default: up to 4, or 8 when there are more than 16,
    so that many images make a wide page rather than a tall strip); the caller chooses which and how many
    (see :data:`PLOT_LIMIT`)."""
    plt = pyplot()

    n = len(images)
    if n == 0:
        raise ValueError("no images to plot")
    columns = columns or (min(n, 4) if n <= 16 else MAX_COLUMNS)
    rows = math.ceil(n / columns)
    fig = plt.figure(figsize=(2.6 * columns, 3.9 * rows))
    grid = fig.add_gridspec(rows * 2, columns, height_ratios=[2.3, 1.45] * rows, hspace=0.12, wspace=0.75)
    for i, (img, pred) in enumerate(zip(images, predictions, strict=True)):
        r, c = divmod(i, columns)
        label = labels[i] if labels is not None else None
        ax = fig.add_subplot(grid[2 * r, c])
        ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])
        if label is not None and classes is not None:
            ax.set_xlabel(_short(classes[label]["name"], 28), fontsize=8, fontweight="bold")
        else:
            ax.set_xlabel(_short(Path(pred.source).name, 28), fontsize=7, color="0.35")
        bars = fig.add_subplot(grid[2 * r + 1, c])
        top = pred.top[:5][::-1]  # most probable at the top
        colours = ["#d62728" if label is not None and t["index"] == label else "#1f77b4" for t in top]
        bars.barh(range(len(top)), [t["probability"] for t in top], color=colours, height=0.7)
        bars.set_yticks(range(len(top)), [_short(t["name"]) for t in top], fontsize=7)
        bars.set_xlim(0, 1)
        bars.set_xticks([0, 0.5, 1], ["0", "50%", "100%"], fontsize=6)  # probabilities, labelled as predict prints them
        bars.tick_params(length=2, pad=2)
        for side in ("top", "right"):
            bars.spines[side].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out, dpi=110, bbox_inches="tight")
