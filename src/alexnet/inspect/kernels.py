"""The paper's Figure 3: the first layer's kernels as a grid of small RGB images.

For the paper's two-tower net the 96 conv1 kernels are drawn as two blocks of 48: conv2 has ``groups=2``,
so kernels 0-47 feed tower 1 only and kernels 48-95 tower 2 only, as on the paper's two GPUs. The paper
observed tower 1's kernels to be largely colour-agnostic and tower 2's colour-specific.

Each kernel is scaled to the full 0..1 range on its own (``scale="kernel"``, the usual way such figures
are drawn), or all with one scale (``scale="global"``) to compare their magnitudes; 0 is mid-grey there.
Stretching each kernel hides how strong it is: the near-constant kernels of a net that has died (or never
learned) come out as vivid colour blobs. So the default title says which weights and which scaling are
drawn, and :func:`faint_kernels` counts the kernels that one common scale would show as near-flat.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.models.meta import meta_of
from alexnet.plotting import pyplot, save_figure

SCALE_WORDS = {"kernel": "each kernel scaled to its own range", "global": "one scale for all, 0 = grey"}
FAINT = 0.1
"""A kernel is faint when its range (max - min) is under this share of the common scale's grey ramp."""

# File names ``alexnet train`` gives a run's weights and checkpoints: alone they do not say which run.
_RUN_FILE_STEMS = {"weights", "final", "model", "best", "last", "checkpoint"}


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


def faint_kernels(model: nn.Module, threshold: float = FAINT) -> tuple[int, int]:
    """(faint, all): how many conv1 kernels would span less than ``threshold`` of the grey ramp with
    ``scale="global"`` (range below ``threshold`` x 2 x the largest |weight|), and how many there are.

    Scale-free, and exactly what the common-scale picture shows. Measured on cifar_4layer
    (threshold 0.1, CIFAR-10 subsets): freshly initialised 0 of 32; trained to 48% training error
    2 of 32; killed by lr 0.1 or 1 without warm-up (error at chance) 18 and 30 of 32. Initialised
    alexnet and alexnet_owt: 0.
    """
    w = torch.cat(conv1_kernels(model))
    span = w.amax(dim=(1, 2, 3)) - w.amin(dim=(1, 2, 3))
    ramp = 2 * float(w.abs().max())
    if ramp == 0:
        return len(w), len(w)
    return int((span < threshold * ramp).sum()), len(w)


def weights_name(source: str | os.PathLike | None) -> str | None:
    """A short name for where weights came from: a run directory's or file's name; a run's generically
    named file (``weights.safetensors``, ``last.pt``) with its directory; a record name as it is."""
    if source is None or str(source) == "":
        return None
    path = Path(source)
    if path.is_dir():
        return f"{path.resolve().name}/"
    if path.stem in _RUN_FILE_STEMS and path.resolve().parent.name:
        return f"{path.resolve().parent.name}/{path.name}"
    return path.name or str(source)


def _shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to at most ``width`` characters."""
    if len(text) <= width:
        return text
    keep = max(width - 3, 2)
    return text[:keep // 2] + "..." + text[len(text) - (keep - keep // 2):]


def default_title(model: nn.Module, scale: str = "kernel", *, width: int = 60) -> str:
    """Two lines saying what the figure draws: whose conv1 (weights' name, model and options), then the
    kernels' count and shape and how their contrast was set; lines cut to ``width`` characters."""
    meta = meta_of(model)
    c = first_conv(model)
    k = c.kernel_size[0]
    options = ", ".join(f"{key}={value}" for key, value in sorted(meta.options.items()))
    arch = meta.arch or type(model).__name__
    model_words = f"{arch} {options}".strip() if options else arch
    name = weights_name(meta.source)
    if name:
        # The model in brackets keeps up to half the line; the file name gives way when space is short.
        tail = f" ({_shorten(model_words, width // 2)})"
        first = f"conv1 of {_shorten(name, max(width - len(tail) - 9, 12))}{tail}"
    else:
        first = _shorten(f"conv1 of {model_words}", width)
    second = _shorten(f"{c.out_channels} kernels {k}x{k}x{c.in_channels}, {SCALE_WORDS[scale]}", width)
    return f"{first}\n{second}"


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

    if scale not in SCALE_WORDS:
        raise UserError(f"scale must be 'kernel' or 'global', got {scale!r}")
    towers = conv1_kernels(model)
    global_max = max(float(t.abs().max()) for t in towers)
    blocks = [tile(_normalise(t, scale, global_max), columns) for t in towers]
    k = towers[0].shape[-1]
    h, w = blocks[0].shape[:2]
    # About 6 screen pixels per pixel of an 11x11 kernel (more for small kernels), 5-12 inches wide at 100 dpi.
    fig_w = min(12.0, max(5.0, w * 0.66 / max(k, 1)))
    titled = len(blocks) > 1
    suptitle = default_title(model, scale, width=int(fig_w * 11)) if title is None else title
    lines = suptitle.count("\n") + 1 if suptitle else 0
    fig_h = len(blocks) * (fig_w * h / w + (0.3 if titled else 0.0)) + 0.25 + 0.2 * lines
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
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)
