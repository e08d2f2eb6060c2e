"""The paper's Figure 4 (right): the training images nearest to a query image in fc7 space.

"If two images produce feature activation vectors with a small Euclidean separation, we can say that the
higher levels of the neural network consider them to be similar" (section 6.1). Distances are plain
Euclidean distances between the 4096-d fc7 activations (after ReLU), as in the paper.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from alexnet.plotting import pyplot, save_figure, short_class_name


def nearest(queries: np.ndarray | torch.Tensor, features: np.ndarray | torch.Tensor, k: int,
            *, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``features`` (N, D) to each query (Q, D): (distances, indices), (Q, k)
    each, nearest first. Works in chunks of the dataset so that N can be large."""
    q = torch.as_tensor(np.asarray(queries), dtype=torch.float32)
    f = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    k = min(k, f.shape[0])
    best_d = torch.full((q.shape[0], 0), float("inf"))
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64)
    for start in range(0, f.shape[0], chunk):
        d = torch.cdist(q[None].double(), f[None, start:start + chunk].double())[0].float()  # (Q, n)
        i = torch.arange(start, start + d.shape[1]).expand_as(d)
        d, i = torch.cat([best_d, d], 1), torch.cat([best_i, i], 1)
        best_d, order = d.topk(min(k, d.shape[1]), dim=1, largest=False, sorted=True)
        best_i = i.gather(1, order)
    return best_d.numpy(), best_i.numpy()


# At most this many neighbours are drawn per query: 21 columns of 1.7 inches make a 3,570 px wide PNG,
# about the most one can still look across (the paper's Figure 4 shows 6). ``--k 1000`` once drew
# 1,000 columns (51,170 px, 13 MB, 16 s); the text and JSON still list all k.
MAX_PLOT_NEIGHBOURS = 20
# Query rows drawn: a folder of queries makes one row each (1.9 inches); 16 rows is about the height of
# a screen page twice over. The text and JSON list the neighbours of every query.
MAX_PLOT_QUERIES = 16

# Characters per title line: what fits a 1.7-inch column in DejaVu Sans at the titles' 8-8.5 pt.
_TITLE_WIDTH = 24
_TITLE_LINES = 2
_COLUMN_WIDTH = 1.7  # inches per image
_NEIGHBOUR_FONT = 8
_QUERY_FONT = 8.5


def fit_label(text: str, width: int = _TITLE_WIDTH, lines: int = _TITLE_LINES) -> str:
    """``text`` in at most ``lines`` lines of ``width`` characters: wrapped at spaces and hyphens, and when
    it is still too long, shortened in the middle with an ellipsis (a file name keeps its start and its
    end: ``n03590841_jack-o'-lantern`` stays whole, a longer one loses its middle)."""
    text = " ".join(str(text).split())
    wrapped = textwrap.wrap(text, width)
    budget = width * lines - 1
    while len(wrapped) > lines and budget > 2:  # breaking at spaces may waste room: keep less
        tail = budget // 3
        wrapped = textwrap.wrap(text[:budget - tail] + "\u2026" + text[-tail:], width)
        budget -= 1
    return "\n".join(wrapped[:lines])


def _format(d: float, digits: int) -> str:
    """``d`` with ``digits`` significant figures, in plain notation (1234, not 1.23e+03)."""
    if not math.isfinite(d):
        return str(d)
    magnitude = math.floor(math.log10(abs(d))) if d else 0
    return f"{d:.{max(digits - 1 - magnitude, 0)}f}"


def format_distances(row: Sequence[float], digits: int = 3, *, max_digits: int = 6) -> list[str]:
    """Distances with ``digits`` significant figures (45.2, 0.579, 1234), more (up to ``max_digits``)
    where that is what tells neighbours apart: a row 0.5791, 0.5794 reads 0.5791, 0.5794, not 0.579 twice.
    Equal distances (duplicate images) stay equal."""
    values = [float(d) for d in row]
    distinct = len(set(values))
    for n in range(digits, max_digits + 1):
        out = [_format(d, n) for d in values]
        if len(set(out)) == distinct:
            break
    return out


def figure_distances(rows: Sequence[Sequence[float]], digits: int = 3, *, max_extra: int = 3) -> list[list[str]]:
    """Distances of a whole figure in one format: the same number of decimals everywhere, enough for
    ``digits`` significant figures on the typical (median) distance, and more (up to ``max_extra``) where
    that is what tells a row's neighbours apart (2.3190 and 2.3220, not 2.32 twice). Equal distances
    (duplicate images) stay equal."""
    values = [[float(d) for d in row] for row in rows]
    finite = sorted(abs(d) for row in values for d in row if math.isfinite(d) and d)
    typical = finite[len(finite) // 2] if finite else 1.0
    base = min(max(digits - 1 - math.floor(math.log10(typical)), 0), 6)
    for decimals in range(base, base + max_extra + 1):
        out = [[f"{d:.{decimals}f}" if math.isfinite(d) else str(d) for d in row] for row in values]
        if all(len(set(o)) == len(set(v)) for o, v in zip(out, values, strict=True)):
            break
    return out


def describe_distances(*, weights: str | None = None, feature_dims: int | None = None,
                       data: str | None = None) -> str:
    """The figure's caption: what ``d`` is, of which activations, with which weights, over which images."""
    if feature_dims and feature_dims != 4096:
        features = f"their {feature_dims}-d activations at the classifier's input (fc7 in the paper's net)"
    else:
        features = "their fc7 activations" + (f" ({feature_dims}-d, after ReLU)" if feature_dims else " (after ReLU)")
    where = f" of {data}" if data else ""
    text = (f"Nearest images{where} to each query (red frame), nearest first; d = Euclidean distance between "
            f"{features}")
    return text + (f"; weights: {weights}" if weights else "")


def plot_neighbors(queries: Sequence[np.ndarray], neighbours: Sequence[Sequence[np.ndarray]],
                   out: str | os.PathLike, *, distances: np.ndarray | None = None,
                   query_titles: Sequence[str] | None = None,
                   neighbour_titles: Sequence[Sequence[str]] | None = None,
                   query_classes: Sequence[str | None] | None = None,
                   weights: str | None = None, feature_dims: int | None = None, data: str | None = None) -> Path:
    """One row per query: the query image, then its neighbours, nearest first. The query is titled by its
    class when ``query_classes`` knows it (its first WordNet name, the file name under the image), else by
    its file name; titles are wrapped (and shortened with an ellipsis past two lines, see
    :func:`fit_label`). Distances share one format across the figure (:func:`figure_distances`), and a
    caption above says what they measure (:func:`describe_distances`). Draws what it is given: the CLI
    keeps it to :data:`MAX_PLOT_NEIGHBOURS` per query."""
    plt = pyplot()

    rows, cols = len(queries), 1 + max(len(n) for n in neighbours)
    fig, axes = plt.subplots(rows, cols, figsize=(_COLUMN_WIDTH * cols, 2.35 * rows + 0.6), squeeze=False,
                             layout="constrained")
    shown = figure_distances([distances[r][:len(neighbours[r])] for r in range(rows)]) \
        if distances is not None else None
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.imshow(queries[r])
                for s in ax.spines.values():
                    s.set_edgecolor("#d62728")
                    s.set_linewidth(2.5)
                known = query_classes[r] if query_classes else None
                name = fit_label(query_titles[r]) if query_titles else "query"
                if known:
                    ax.set_title(fit_label(short_class_name(known)), fontsize=_QUERY_FONT, fontweight="bold")
                    if query_titles:
                        ax.set_xlabel(name, fontsize=7, color="0.35", labelpad=2)
                else:
                    ax.set_title(name, fontsize=_QUERY_FONT)
            elif c - 1 < len(neighbours[r]):
                ax.imshow(neighbours[r][c - 1])
                label = fit_label(neighbour_titles[r][c - 1]) if neighbour_titles else ""
                if shown is not None:
                    label = f"{label}\nd={shown[r][c - 1]}" if label else f"d={shown[r][c - 1]}"
                ax.set_title(label, fontsize=_NEIGHBOUR_FONT)
            else:
                ax.axis("off")
    caption = describe_distances(weights=weights, feature_dims=feature_dims, data=data)
    fig.suptitle(textwrap.fill(caption, width=max(40, int(_COLUMN_WIDTH * cols * 13)), break_long_words=False,
                               break_on_hyphens=False), fontsize=8.5, color="0.2")
    return save_figure(fig, out, dpi=100)
