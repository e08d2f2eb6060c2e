"""The paper's Figure 4 (right): the training images nearest to a query image in fc7 space.

"If two images produce feature activation vectors with a small Euclidean separation, we can say that the
higher levels of the neural network consider them to be similar" (section 6.1). Distances are plain
Euclidean distances between the 4096-d fc7 activations (after ReLU), as in the paper.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from alexnet.plotting import pyplot, save_figure


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


def plot_neighbors(queries: Sequence[np.ndarray], neighbours: Sequence[Sequence[np.ndarray]],
                   out: str | os.PathLike, *, distances: np.ndarray | None = None,
                   query_titles: Sequence[str] | None = None, neighbour_titles: Sequence[Sequence[str]] | None = None) -> Path:
    """One row per query: the query image, then its neighbours, nearest first."""
    plt = pyplot()

    rows, cols = len(queries), 1 + max(len(n) for n in neighbours)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.95 * rows), squeeze=False)
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
                ax.set_title(query_titles[r] if query_titles else "query", fontsize=7)
            elif c - 1 < len(neighbours[r]):
                ax.imshow(neighbours[r][c - 1])
                label = neighbour_titles[r][c - 1] if neighbour_titles else ""
                if distances is not None:
                    label = f"{label}\nd={distances[r][c - 1]:.1f}" if label else f"d={distances[r][c - 1]:.1f}"
                ax.set_title(label, fontsize=6)
            else:
                ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)
