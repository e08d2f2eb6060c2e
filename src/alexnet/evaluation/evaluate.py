"""Top-1 and top-5 error on a prepared dataset, with the centre crop or the paper's 10 crops.

Section 4.1 of the paper: at test time the network "extracts five 224x224 patches (the four corner
patches and the center patch) as well as their horizontal reflections (hence ten patches in all), and
averag[es] the predictions made by the network's softmax layer on the ten patches". With ``crops=1`` only
the centre patch is used (the paper's 39.0/18.3 vs 37.5/17.0 on ILSVRC-2010).

Under ``torchrun`` every process takes a contiguous shard of the images; counts are integers summed over
processes once at the end, and a per-image tally checks that every image was counted exactly once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import numbers
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from alexnet import runtime
from alexnet.errors import UserError
from alexnet.evaluation.batches import iter_squares, shard
from alexnet.evaluation.predict import _device_of
from alexnet.files import write_atomic
from alexnet.models.meta import meta_of
from alexnet.progress import Progress
from alexnet.weights.classes import match_classes
from alexnet.weights.load import model_classes, model_preprocess


@dataclass
class EvalResult:
    """Counts of one evaluation; accuracies and errors are fractions (0..1)."""

    images: int
    crops: int
    top1_correct: int
    top5_correct: int
    topk: int  # 5, or the number of classes when the model has fewer
    per_class: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    world_size: int = 1
    loss: float = math.nan  # mean cross-entropy of the scores (of the ten crops' mean softmax)

    @property
    def top1_accuracy(self) -> float:
        return self.top1_correct / self.images if self.images else float("nan")

    @property
    def top5_accuracy(self) -> float:
        return self.top5_correct / self.images if self.images else float("nan")

    # Counted, not 1 - accuracy: the nearest float to the exact ratio, so 2734 of 10000 is 0.2734 in JSON too.
    @property
    def top1_error(self) -> float:
        return (self.images - self.top1_correct) / self.images if self.images else float("nan")

    @property
    def top5_error(self) -> float:
        return (self.images - self.top5_correct) / self.images if self.images else float("nan")

    def summary(self) -> dict:
        """The JSON summary: the errors and accuracies above (fractions, 0..1), counts, speed."""
        return {
            "top1_error": self.top1_error, "top5_error": self.top5_error, "loss": self.loss,
            "top1_accuracy": self.top1_accuracy, "top5_accuracy": self.top5_accuracy,
            "top1_correct": self.top1_correct, "top5_correct": self.top5_correct, "images": self.images,
            "crops": self.crops, "topk": self.topk, "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images / self.seconds, 2) if self.seconds > 0 else None,
            "processes": self.world_size,
        }

    def write_per_class_csv(self, path: str | os.PathLike, *, include_empty: bool = False) -> Path:
        """One row per class that has images in the evaluated data (``include_empty``: every class of the
        dataset, e.g. all 1000 of ImageNet's for Imagenette prepared with ``--classes``)."""
        fields = ["index", "wnid", "name", "model_index", "images", "top1_correct", "top5_correct",
                  "top1_accuracy", "top5_accuracy"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for row in self.per_class:
            n = row["images"]
            if not n and not include_empty:
                continue
            w.writerow({**{k: row.get(k) for k in fields[:7]},
                        "top1_accuracy": f"{row['top1_correct'] / n:.6f}" if n else "",
                        "top5_accuracy": f"{row['top5_correct'] / n:.6f}" if n else ""})
        return write_atomic(path, buf.getvalue())


class Tally:
    """Sums of one evaluation pass, on the device (no host sync per batch): images, top-1 and top-5 hits
    per data class, and the summed loss; :meth:`reduce` adds them up over processes."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.counts = torch.zeros(3, num_classes, dtype=torch.int64, device=device)  # images, top-1, top-5
        self.loss = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
        self.topk = 5

    def add(self, scores: torch.Tensor, log_probs: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> None:
        self.topk = min(5, scores.shape[-1])
        top = scores.topk(self.topk, dim=-1).indices  # (B, k)
        hits = top.eq(target[:, None])
        self.counts[0].index_add_(0, y, torch.ones_like(y))
        self.counts[1].index_add_(0, y, hits[:, 0].long())
        self.counts[2].index_add_(0, y, hits.any(-1).long())
        self.loss += F.nll_loss(log_probs, target, reduction="sum").to(self.loss.dtype)

    def reduce(self, all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None) -> Tally:
        if all_reduce_sum is not None:
            self.counts = all_reduce_sum(self.counts)
            self.loss = all_reduce_sum(self.loss)
        return self

    def summary(self) -> dict:
        """``{"loss", "top1_err", "top5_err", "images"}`` (fractions; NaN when nothing was seen)."""
        n, top1, top5 = (int(v) for v in self.counts.sum(1).tolist())
        if n == 0:
            nan = float("nan")
            return {"loss": nan, "top1_err": nan, "top5_err": nan, "images": 0}
        return {"loss": float(self.loss) / n, "top1_err": (n - top1) / n, "top5_err": (n - top5) / n, "images": n}


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches: Iterable, *, num_classes: int, ten_crop: bool = False,
                     target_map: torch.Tensor | None = None, autocast: Callable[[], Any] | None = None,
                     channels_last: bool = False, on_batch: Callable[[int], None] | None = None,
                     device: torch.device | None = None, fixed_batch: int | None = None) -> Tally:
    """The evaluation loop, one for training's validation (every epoch and the final 10 crops) and for
    ``alexnet evaluate``.

    ``batches`` yields normalised crops ``x`` ((B, 3, C, C); with ``ten_crop`` (B, 10, 3, C, C)) and data
    labels ``y`` on the model's device. A centre crop is scored by its logits; ten crops by the mean of
    their softmax (section 4.1). The loss is the cross-entropy of those scores. ``target_map`` maps data
    classes to the model's outputs (a subset of ImageNet's classes, say); ``num_classes``: data classes.
    The model is put in eval mode and left so; the caller reduces the :class:`Tally` over processes.
    ``fixed_batch``: the model only ever sees batches of this many images (a last partial batch padded
    with zeros, ten crops run in chunks), so that a compiled model compiles once for evaluation, not again
    for the last batch and the ten crops (each a compilation as long as the first, on a small set longer
    than the evaluation itself).
    """
    device = device or _device_of(model)
    tally = Tally(num_classes, device)
    model.eval()
    for x, y in batches:
        with autocast() if autocast is not None else contextlib.nullcontext():
            if ten_crop:
                b = x.shape[0]
                xs = x.flatten(0, 1)  # (B*10, 3, C, C)
                if channels_last:
                    xs = xs.contiguous(memory_format=torch.channels_last)
                scores = _forward(model, xs, fixed_batch, channels_last).softmax(-1).view(b, 10, -1).mean(1)
                log_probs = scores.clamp_min(1e-12).log()
            else:
                scores = _forward(model, x, fixed_batch, channels_last)  # logits rank classes as softmax does
                log_probs = scores.log_softmax(-1)
        tally.add(scores, log_probs, y, y if target_map is None else target_map[y])
        if on_batch is not None:
            on_batch(len(y))
    return tally


def _forward(model: nn.Module, x: torch.Tensor, fixed: int | None, channels_last: bool) -> torch.Tensor:
    """``model(x).float()``, in batches of exactly ``fixed`` images when given (padded with zeros, whose
    outputs are dropped: in eval mode every image's output depends on that image alone)."""
    if fixed is None or x.shape[0] == fixed:
        return model(x).float()
    outs = []
    for i in range(0, x.shape[0], fixed):
        part = x[i:i + fixed]
        k = part.shape[0]
        if k < fixed:
            part = torch.cat([part, part.new_zeros((fixed - k, *part.shape[1:]))])
            if channels_last:
                part = part.contiguous(memory_format=torch.channels_last)
        # a copy: CUDA graphs (compile mode reduce-overhead) reuse their output's memory at the next call
        outs.append(model(part)[:k].float().clone())
    return torch.cat(outs)


def _dist_info(rank: int | None, world_size: int | None) -> tuple[int, int, bool]:
    """(rank, world size, whether to all-reduce): given (a manual split), else the process group's."""
    grouped = dist.is_available() and dist.is_initialized()
    if rank is not None and world_size is not None:
        return rank, world_size, grouped and world_size > 1
    rank, world_size = runtime.rank_world()
    return rank, world_size, world_size > 1


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(t)
    return t


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, crops: int = 1, batch_size: int = 64, indices=None,
             class_map: list[int] | None = None, progress: bool = True, workers: int | None = None,
             rank: int | None = None, world_size: int | None = None) -> EvalResult:
    """Evaluate ``model`` (from :func:`alexnet.load`, or any model with ImageNet's mean assumed) on a
    ``PreparedDataset`` (anything with ``classes``, ``labels``, ``len`` and ``get_uint8(i)``), or the path
    of one.

    The dataset's classes must be the model's, or a subset of them (matched by WNID/name, e.g. Imagenette
    against ImageNet weights); predictions are over all of the model's classes either way. Under
    ``torch.distributed`` (torchrun), each process evaluates its shard and every process returns the totals.
    The crops are normalised with the model's own preprocessing (``model.meta.preprocess``).
    """
    if crops not in (1, 10):
        raise UserError(f"crops must be 1 (centre) or 10 (the paper's ten patches), got {crops}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(dataset, (str, os.PathLike)):
        from alexnet.evaluation.data import open_prepared

        dataset = open_prepared(dataset)
    rank, world_size, distributed = _dist_info(rank, world_size)
    device = _device_of(model)
    num_outputs = int(getattr(model, "num_classes", 0) or 0)
    data_classes = list(getattr(dataset, "classes", []) or [])
    labels = np.asarray(dataset.labels, dtype=np.int64)
    n_total = len(dataset) if indices is None else len(indices)
    all_indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    if class_map is None:
        if not data_classes:
            data_classes = [{"index": i, "wnid": None, "name": f"class_{i}"} for i in range(int(labels.max()) + 1)]
        class_map = match_classes(data_classes, model_classes(model) if meta_of(model).classes else [],
                                  num_outputs or len(data_classes))
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_map)):
        raise UserError(f"the dataset's labels run to {int(labels.max())} but it has {len(class_map)} classes")
    pre = model_preprocess(model)
    if getattr(dataset, "size", None) and int(dataset.size) < pre.crop_size:
        raise UserError(f"the dataset's {dataset.size}x{dataset.size} images are smaller than the "
                        f"model's {pre.crop_size} crops")

    seen = np.zeros(n_total, dtype=np.int32)  # every image must be counted exactly once
    positions = shard(n_total, rank, world_size)

    def batches():
        pos = np.arange(positions.start, positions.stop)
        for batch_pos, squares in _iter_positions(dataset, all_indices, pos, batch_size, workers):
            np.add.at(seen, batch_pos, 1)
            y = torch.from_numpy(labels[all_indices[batch_pos]]).to(device, non_blocking=True)
            yield pre.crops(squares.to(device, non_blocking=True), ten_crop=crops == 10), y

    was_training = model.training
    start = time.perf_counter()
    desc = "evaluate" + (f" (rank 0 of {world_size})" if world_size > 1 else "")
    try:
        with Progress(len(positions), desc, enabled=progress and rank == 0) as bar:
            tally = evaluate_batches(model, batches(), num_classes=len(class_map), ten_crop=crops == 10,
                                     target_map=torch.as_tensor(class_map, dtype=torch.int64, device=device),
                                     on_batch=bar.update, device=device)
    finally:
        model.train(was_training)
    seen_all = torch.from_numpy(seen).to(device)
    if distributed:
        tally.reduce(_all_reduce_sum)
        dist.all_reduce(seen_all)
    seen_cpu = seen_all.cpu()
    if not distributed:  # one process of a manual split (rank/world_size given): check its own shard
        seen_cpu = seen_cpu[positions.start:positions.stop]
    if not bool((seen_cpu == 1).all()):  # a sharding bug must never pass as a result
        raise RuntimeError(f"evaluation counted {int((seen_cpu == 0).sum())} images 0 times and "
                           f"{int((seen_cpu > 1).sum())} more than once")
    loss = tally.summary()["loss"]
    if sum(tally.counts[0].tolist()) and not math.isfinite(loss):  # NaN logits rank arbitrarily: no result
        raise UserError("the model's outputs are not finite numbers (NaN or infinite): its weights or their "
                        "preprocessing (mean, std) are broken; no error rate to report")
    n, t1, t5 = tally.counts.cpu().tolist()
    per_class = []
    for j in range(len(class_map)):
        c = data_classes[j] if j < len(data_classes) else {}
        per_class.append({"index": j, "wnid": c.get("wnid"), "name": c.get("name"), "model_index": class_map[j],
                          "images": n[j], "top1_correct": t1[j], "top5_correct": t5[j]})
    return EvalResult(images=sum(n), crops=crops, top1_correct=sum(t1), top5_correct=sum(t5), topk=tally.topk,
                      per_class=per_class, seconds=time.perf_counter() - start, world_size=world_size,
                      loss=loss)


def _iter_positions(dataset, all_indices: np.ndarray, positions: np.ndarray, batch_size: int, workers: int | None):
    """Batches over ``positions`` (into ``all_indices``): (positions, squares)."""
    order = all_indices[positions]
    for k, (_, squares) in enumerate(iter_squares(dataset, order, batch_size, workers=workers)):
        yield positions[k * batch_size:(k + 1) * batch_size], squares
