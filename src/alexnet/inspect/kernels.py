"""The paper's Figure 3: the first layer's kernels as a grid of small RGB images.

For the paper's two-tower net the 96 conv1 kernels are drawn as two blocks of 48: conv2 has ``groups=2``,
so kernels 0-47 feed tower 1 only and kernels 48-95 tower 2 only, as on the paper's two GPUs. The paper
observed tower 1's kernels to be largely colour-agnostic and tower 2's colour-specific.

Each kernel is scaled to the full 0..1 range on its own (``scale="kernel"``, the usual way such figures
are drawn), or all with one scale (``scale="global"``) to compare their magnitudes; 0 is mid-grey there.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.plotting import pyplot, save_figure


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first convolution reading the 3 input channels (conv1)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            return m
    raise UserError("the model has no convolution over RGB input")


def tower_count(model: nn.Module) -> int:
    """How many towers read conv1's output: the groups of the next convolution (2 for the paper's net)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) > 1 and convs[0].out_channels % convs[1].groups == 0:
        return convs[1].groups
    return 1


def conv1_kernels(model: nn.Module) -> list[torch.Tensor]:
    """conv1's kernels split by tower: a list of (n, 3, k, k) float32 tensors (RGB input order)."""
    w = first_conv(model).weight.detach().float().cpu()
    return list(w.chunk(tower_count(model), dim=0))


def _normalise(w: torch.Tensor, scale: str, global_max: float) -> np.ndarray:
    if scale == "kernel":
        lo = w.amin(dim=(1, 2, 3), keepdim=True)
        hi = w.amax(dim=(1, 2, 3), keepdim=True)
        w = (w - lo) / (hi - lo).clamp_min(1e-12)
    elif scale == "global":
        w = w / (2 * max(global_max, 1e-12)) + 0.5
    else:
        raise UserError(f"scale must be 'kernel' or 'global', got {scale!r}")
    return w.clamp(0, 1).permute(0, 2, 3, 1).numpy()  # (n, k, k, 3)


def tile(kernels: np.ndarray, columns: int = 16, pad: int = 1) -> np.ndarray:
    """(n, k, k, 3) in 0..1 -> one (rows*(k+pad)+pad, columns*(k+pad)+pad, 3) image on a white ground."""
    n, k = kernels.shape[0], kernels.shape[1]
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (k + pad) + pad, columns * (k + pad) + pad, 3), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, columns)
        y, x = pad + r * (k + pad), pad + c * (k + pad)
        grid[y:y + k, x:x + k] = kernels[i]
    return grid


def plot_kernels(model: nn.Module, out: str | os.PathLike, *, scale: str = "kernel", columns: int = 16,
                 title: str | None = None) -> Path:
    """Draw conv1's kernels to ``out`` (PNG), one block per tower; returns the path."""
    plt = pyplot()

    towers = conv1_kernels(model)
    global_max = max(float(t.abs().max()) for t in towers)
    blocks = [tile(_normalise(t, scale, global_max), columns) for t in towers]
    k = towers[0].shape[-1]
    h, w = blocks[0].shape[:2]
    # About 6 screen pixels per pixel of an 11x11 kernel (more for small kernels), 5-12 inches wide at 100 dpi.
    fig_w = min(12.0, max(5.0, w * 0.66 / max(k, 1)))
    titled = len(blocks) > 1
    fig_h = len(blocks) * (fig_w * h / w + (0.3 if titled else 0.0)) + 0.45
    fig, axes = plt.subplots(len(blocks), 1, figsize=(fig_w, fig_h), squeeze=False)
    n = towers[0].shape[0]
    for i, (ax, block) in enumerate(zip(axes[:, 0], blocks, strict=True)):
        ax.imshow(block, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        if len(blocks) > 1:
            ax.set_title(f"tower {i + 1} (GPU {i + 1}): kernels {i * n}-{(i + 1) * n - 1}", fontsize=9)
    c = first_conv(model)
    fig.suptitle(title or f"conv1: {c.out_channels} kernels {k}x{k}x{c.in_channels}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)
