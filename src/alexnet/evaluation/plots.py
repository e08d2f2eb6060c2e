"""The paper's Figure 4 (left): test images, each with its five most probable labels as bars.

As in the paper, the correct label (when known) is written under the image and its bar, if it is among
the five, is drawn in red; the other bars are blue. Classes are named by their first WordNet name
(``gas pump``, not ``gas pump, gasoline pump, ...``), as in every figure of the package.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alexnet.evaluation.predict import Prediction
from alexnet.plotting import clip_label, pyplot, save_figure, short_class_name, text_width_inches

_WNID = re.compile(r"n\d{8}")
PLOT_LIMIT = 32
"""The most images ``alexnet predict --plot`` draws unless told otherwise: 4 rows of 8, a page about 2,500 px
wide in which every label can still be read. Each image takes a cell of about 300 x 355 px (110 dpi; wider
by what its longest class name needs), so 200 images would be a 10 MB page no one scrolls through: the text
and JSON cover them all."""
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


# Inches of the layout (one cell per image: its label column, then the image above its bars).
_AXES_WIDTH = 1.5  # the image and its bars
_IMAGE_LABEL_HEIGHT = 0.32  # the name under the image
_BARS_HEIGHT = 0.95
_ROW_GAP = 0.45  # the bars' tick labels, and air before the next row's image
_COLUMN_GAP = 0.3  # right of the bars: room for half of their "100%" and air before the next labels
_LABEL_FONT = 7.5
_LABEL_CHARS = 24  # a class name on a bar; the name under an image may be longer
_TITLE_CHARS = 30


def grid_shape(n: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) for ``n`` images: up to 4 columns (8 past 16 images, so many make a wide page rather
    than a tall strip), as few as keep the rows that many: 5 images make 3 + 2, not 4 + 1."""
    if columns:
        return math.ceil(n / columns), columns
    widest = 4 if n <= 16 else MAX_COLUMNS
    rows = math.ceil(n / widest)
    return rows, math.ceil(n / rows)


def predictions_figure(images: Sequence[np.ndarray], predictions: Sequence[Prediction],
                       *, labels: Sequence[int | None] | None = None, classes: Sequence[dict] | None = None,
                       columns: int | None = None, title: str | None = None):
    """The figure of :func:`plot_predictions` (a matplotlib Figure, not yet saved).

    Class names are their first WordNet name (:func:`alexnet.plotting.short_class_name`). The room left of
    each column's bars is measured from its longest label, so no label reaches the bars of the column to its
    left, whatever their lengths or the probabilities."""
    plt = pyplot()

    n = len(images)
    if n == 0:
        raise ValueError("no images to plot")
    rows, columns = grid_shape(n, columns)
    bar_labels = [[clip_label(short_class_name(t["name"]), _LABEL_CHARS) for t in p.top[:5][::-1]]
                  for p in predictions]  # most probable at the top
    fig = plt.figure()
    label_w = text_width_inches(fig, {s for row in bar_labels for s in row}, _LABEL_FONT) + 0.12  # + tick and pad
    cell_w = label_w + _AXES_WIDTH + _COLUMN_GAP
    row_h = _AXES_WIDTH + _IMAGE_LABEL_HEIGHT + _BARS_HEIGHT + _ROW_GAP
    top = 0.4 if title else 0.05
    width, height = 0.1 + columns * cell_w, top + rows * row_h
    fig.set_size_inches(width, height)

    def box(x, y, w, h):  # inches from the top left -> the figure's fraction
        return [x / width, 1 - (y + h) / height, w / width, h / height]

    for i, (img, pred) in enumerate(zip(images, predictions, strict=True)):
        r, c = divmod(i, columns)
        x, y = 0.1 + c * cell_w + label_w, top + r * row_h
        label = labels[i] if labels is not None else None
        ax = fig.add_axes(box(x, y, _AXES_WIDTH, _AXES_WIDTH))
        ax.imshow(img)
        ax.set_aspect("auto")  # the squares fill their box
        ax.set_xticks([])
        ax.set_yticks([])
        if label is not None and classes is not None:
            ax.set_xlabel(clip_label(short_class_name(classes[label]["name"]), _TITLE_CHARS), fontsize=8.5,
                          fontweight="bold", labelpad=3)
        else:
            ax.set_xlabel(clip_label(Path(pred.source).name, _TITLE_CHARS), fontsize=7, color="0.35", labelpad=3)
        bars = fig.add_axes(box(x, y + _AXES_WIDTH + _IMAGE_LABEL_HEIGHT, _AXES_WIDTH, _BARS_HEIGHT))
        top5 = pred.top[:5][::-1]
        colours = ["#d62728" if label is not None and t["index"] == label else "#1f77b4" for t in top5]
        bars.barh(range(len(top5)), [t["probability"] for t in top5], color=colours, height=0.7)
        bars.set_yticks(range(len(top5)), bar_labels[i], fontsize=_LABEL_FONT)
        bars.set_ylim(-0.5, 4.5)
        bars.set_xlim(0, 1)
        bars.set_xticks([0, 0.5, 1], ["0%", "50%", "100%"], fontsize=6.5)  # probabilities, as predict prints them
        bars.tick_params(length=2, pad=2)
        for side in ("top", "right"):
            bars.spines[side].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.12 / height, va="top")
    return fig


def plot_predictions(images: Sequence[np.ndarray], predictions: Sequence[Prediction], out: str | os.PathLike,
                     *, labels: Sequence[int | None] | None = None, classes: Sequence[dict] | None = None,
                     columns: int | None = None, title: str | None = None) -> Path:
    """Draw images (uint8 HWC) with their top-5 bars to ``out`` (PNG); returns the path.

    Every image given is drawn, in rows of ``columns`` (default: :func:`grid_shape`: up to 4, or 8 when there
    are more than 16, as many rows as that takes and the rows as even as can be); the caller chooses which
    and how many (see :data:`PLOT_LIMIT`)."""
    fig = predictions_figure(images, predictions, labels=labels, classes=classes, columns=columns, title=title)
    return save_figure(fig, out, dpi=110, bbox_inches="tight")
