"""The 4096-d fc7 activations (after ReLU) the paper uses for its nearest neighbours (Figure 4, right).

Images are cropped and normalised as in evaluation (centre crop, the weights' mean). Saved as ``.npy``
(the (N, 4096) float32 matrix alone) or ``.npz`` (``features``, ``labels``, ``indices``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.evaluation.batches import iter_squares
from alexnet.evaluation.predict import _device_of
from alexnet.progress import Progress
from alexnet.weights.load import model_preprocess


@torch.no_grad()
def fc7(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """fc7 activations of normalised crops (B, 3, C, C): (B, 4096) for the ImageNet models."""
    if not hasattr(model, "forward_head"):
        raise UserError(f"{type(model).__name__} has no forward_head(pre_logits=True) to take features from")
    return model.forward_head(model.forward_features(x), pre_logits=True).float()


@torch.no_grad()
def image_features(model: nn.Module, squares: torch.Tensor) -> torch.Tensor:
    """fc7 of uint8 squares (B, S, S, 3) with the model's preprocessing (centre crop)."""
    pre = model_preprocess(model)
    return fc7(model, pre.crops(squares.to(_device_of(model))))


@torch.no_grad()
def extract_features(model: nn.Module, dataset, *, batch_size: int = 64, indices=None, progress: bool = True,
                     workers: int | None = None) -> np.ndarray:
    """fc7 features of every image of a prepared dataset (or of ``indices``): float32 (N, D)."""
    was_training = model.training
    model.eval()
    order = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    out: list[np.ndarray] = []
    try:
        with Progress(len(order), "features", enabled=progress) as bar:
            for idx, squares in iter_squares(dataset, order, batch_size, workers=workers):
                out.append(image_features(model, squares).cpu().numpy())
                bar.update(len(idx))
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def save_features(path: str | os.PathLike, features: np.ndarray, *, labels=None, indices=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, features.astype(np.float32))
    elif suffix == ".npz":
        extra = {}
        if labels is not None:
            extra["labels"] = np.asarray(labels, dtype=np.int64)
        if indices is not None:
            extra["indices"] = np.asarray(indices, dtype=np.int64)
        np.savez(path, features=features.astype(np.float32), **extra)
    else:
        raise UserError(f"features file must end in .npy or .npz, got {path.name!r}")
    return path


def load_features(path: str | os.PathLike) -> np.ndarray:
    """Features saved by :func:`save_features` (no pickles: ``allow_pickle=False``)."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if "features" not in data:
                    raise UserError(f"{path}: no 'features' array in it")
                data = data["features"]
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"cannot read features {path}: {str(e) or type(e).__name__}") from None
    if data.ndim != 2:
        raise UserError(f"{path}: features must be a 2-D (images, dimensions) array, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.floating) or not np.isfinite(data).all():
        raise UserError(f"{path}: features must be finite floating-point numbers ({data.dtype}"
                        f"{'' if not np.issubdtype(data.dtype, np.floating) else ', with NaN or infinite values'})")
    return data
