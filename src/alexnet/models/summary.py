"""Per-layer summary of a model: output shape, parameters and multiply-accumulates per image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from alexnet.models.layers import CeilPad2d, LocalResponseNorm

# Layers that change nothing a reader of the table cares about (shape stays, no parameters).
_QUIET = (nn.ReLU, nn.Tanh, nn.Dropout, nn.Identity, CeilPad2d)


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]  # per image, (C, H, W) or (features,)
    params: int
    macs: int  # multiply-accumulates per image


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    per_image = out[0].numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


@torch.no_grad()
def summarize(model: nn.Module, input_size: int, channels: int = 3) -> list[LayerRow]:
    """Run one image through ``model`` (in eval mode) and describe every leaf layer that matters.

    The image is zeros in the model's own dtype and on its own device. A size the model does not take is
    the model's own error (for ours an :class:`~alexnet.models.layers.InputSizeError`, a ValueError naming
    the size it takes)."""
    rows: list[LayerRow] = []
    hooks = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, _inputs, out: torch.Tensor) -> None:
        if isinstance(module, _QUIET):
            return
        name = names[module].split(".")[-1]
        if name.isdigit():  # an unnamed Sequential slot (torchvision style): keep the full path
            name = names[module]
        params = sum(p.numel() for p in module.parameters(recurse=False))
        kind = "LRN" if isinstance(module, LocalResponseNorm) else type(module).__name__
        rows.append(LayerRow(name, kind, tuple(out.shape[1:]), params, _macs(module, out)))

    for module in model.modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, channels, input_size, input_size, **_dummy_like(model)))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return rows


def _dummy_like(model: nn.Module) -> dict:
    """``device`` and ``dtype`` for an input to ``model``: those of its first floating-point parameter (or
    buffer); CPU float32 for a model without any."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return {"device": t.device, "dtype": t.dtype}
    return {}
