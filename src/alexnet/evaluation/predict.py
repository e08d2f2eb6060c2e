"""Classify images: top-k classes with names and probabilities.

Preprocessing is the evaluation's (shorter side 256, centre crop, the weights' mean; see
:class:`~alexnet.weights.preprocess.Preprocess`), optionally with the paper's 10 crops (softmax averaged).

    model = alexnet.load("run/weights.safetensors")
    for p in alexnet.predict(model, ["cat.jpg", "dog.png"]):
        print(p.source, p.top[0]["name"], p.top[0]["probability"])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from alexnet.errors import BadOptionError
from alexnet.weights.load import model_classes, model_preprocess


@dataclass
class Prediction:
    """The top-k classes of one image, most probable first."""

    source: str
    top: list[dict] = field(default_factory=list)  # [{"index", "wnid", "name", "probability"}, ...]

    def to_dict(self) -> dict:
        return {"image": self.source, "predictions": self.top}


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _dtype_of(model: nn.Module) -> torch.dtype:
    """The float type of the model's weights (a ``.half()`` or ``.bfloat16()`` model takes its inputs so)."""
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    return p.dtype if p is not None else torch.float32


@torch.no_grad()
def class_probabilities(model: nn.Module, squares: torch.Tensor, *, ten_crop: bool = False,
                        preprocess=None) -> torch.Tensor:
    """Softmax over the model's classes of uint8 squares (B, S, S, 3): (B, num_classes) float32.

    With ``ten_crop`` the softmax of the 10 patches is averaged (section 4.1 of the paper)."""
    pre = preprocess or model_preprocess(model)
    x = pre.crops(squares.to(_device_of(model)), ten_crop=ten_crop).to(_dtype_of(model))
    if ten_crop:
        b = x.shape[0]
        probs = model(x.flatten(0, 1)).float().softmax(-1)  # (B*10, K)
        return probs.view(b, 10, -1).mean(1)
    return model(x).float().softmax(-1)


def top_classes(probs: torch.Tensor, classes: Sequence[dict], k: int) -> list[list[dict]]:
    """Per row of ``probs`` the ``k`` most probable classes as dicts, most probable first."""
    k = max(1, min(k, probs.shape[-1]))
    values, indices = probs.topk(k, dim=-1)
    out = []
    for vs, ixs in zip(values.tolist(), indices.tolist(), strict=True):
        row = []
        for v, i in zip(vs, ixs, strict=True):
            c = classes[i] if i < len(classes) else {"wnid": None, "name": f"class_{i}"}
            row.append({"index": i, "wnid": c.get("wnid"), "name": c.get("name"), "probability": float(v)})
        out.append(row)
    return out


def _as_list(images) -> list:
    if isinstance(images, (str, os.PathLike, np.ndarray)) or hasattr(images, "getpixel"):
        return [images]
    if isinstance(images, torch.Tensor):  # one (C, H, W) image, or a batch (N, C, H, W)
        return list(images) if images.ndim == 4 else [images]
    return list(images)


def _name(image, i: int) -> str:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"<image {i}>"


def predict(model: nn.Module, images, *, topk: int = 5, ten_crop: bool = False,
            batch_size: int = 32) -> list[Prediction]:
    """The ``topk`` classes of each image (paths, PIL images, uint8 arrays (H, W, 3) or torchvision-style
    tensors (C, H, W), uint8 or float in 0..1; one, a list, or an (N, C, H, W) batch).

    ``model``: from :func:`alexnet.load` (which gives it its class names and preprocessing) or any
    registered model (then ImageNet's mean and, for 1000 outputs, ImageNet's class names are assumed).
    An unreadable image raises :class:`~alexnet.errors.UserError` naming it.
    """
    items = _as_list(images)
    for name, value in (("topk", topk), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadOptionError(f"{name} must be an integer >= 1, got {value!r}")
    was_training = model.training
    model.eval()
    pre, classes = model_preprocess(model), model_classes(model)
    results: list[Prediction] = []
    try:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            squares = torch.from_numpy(np.stack([pre.square(im) for im in chunk]))
            probs = class_probabilities(model, squares, ten_crop=ten_crop, preprocess=pre)
            for j, top in enumerate(top_classes(probs.cpu(), classes, topk)):
                results.append(Prediction(_name(chunk[j], start + j), top))
    finally:
        model.train(was_training)
    return results


def iter_image_files(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files named, and image files (by extension) under directories named, in order, each once; under a
    directory, hidden files and folders and macOS's ``._x`` / ``__MACOSX`` are passed over, as prepare does."""
    from pathlib import Path

    from alexnet.data.sources import ignored_name

    exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
    out: list[str] = []
    seen: set[str] = set()
    for item in inputs:
        p = Path(item)
        # A dangling symlink is listed too: it then fails to open and is counted with the unreadable files,
        # instead of vanishing from both lists.
        files = sorted(f for f in p.rglob("*") if (f.is_file() or (f.is_symlink() and not f.exists()))
                       and f.suffix.lower() in exts and not ignored_name(f.relative_to(p).as_posix())
                       ) if p.is_dir() else [p]
        for f in files:
            key = os.fspath(f)
            if key not in seen:
                seen.add(key)
                out.append(key)
    return out
