"""Top-1 and top-5 error on a prepared dataset, with the centre crop or the paper's 10 crops.

Section 4.1 of the paper: at test time the network "extracts five 224x224 patches (the four corner
patches and the center patch) as well as their horizontal reflections (hence ten patches in all), and
averag[es] the predictions made by the network's softmax layer on the ten patches". With ``crops=1`` only
the centre patch is used (the paper's 39.0/18.3 vs 37.5/17.0 on ILSVRC-2010).

Under ``torchrun`` every process takes a contiguous shard of the images; counts are integers summed over
processes once at the end, and a per-image tally checks that every image was counted exactly once.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from alexnet.errors import UserError
from alexnet.evaluation.batches import iter_squares, shard
from alexnet.evaluation.predict import _device_of
from alexnet.evaluation.progress import Progress
from alexnet.files import write_atomic
from alexnet.models.meta import meta_of
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
            "top1_error": self.top1_error, "top5_error": self.top5_error,
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


def _dist_info(rank: int | None, world_size: int | None) -> tuple[int, int, bool]:
    if rank is not None and world_size is not None:
        return rank, world_size, dist.is_available() and dist.is_initialized() and world_size > 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), dist.get_world_size() > 1
    return 0, 1, False


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, crops: int = 1, batch_size: int = 64, indices=None,
             class_map: list[int] | None = None, progress: bool = True, threads: int | None = None,
             rank: int | None = None, world_size: int | None = None) -> EvalResult:
    """Evaluate ``model`` (from :func:`alexnet.load`, or any model with ImageNet's mean assumed) on a
    ``PreparedDataset`` (anything with ``classes``, ``labels``, ``len`` and ``get_uint8(i)``).

    The dataset's classes must be the model's, or a subset of them (matched by WNID/name, e.g. Imagenette
    against ImageNet weights); predictions are over all of the model's classes either way. Under
    ``torch.distributed`` (torchrun), each process evaluates its shard and every process returns the totals.
    """
    if crops not in (1, 10):
        raise UserError(f"crops must be 1 (centre) or 10 (the paper's ten patches), got {crops}")
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
    mapping = torch.as_tensor(class_map, dtype=torch.int64, device=device)
    n_data_classes = len(class_map)
    pre = model_preprocess(model)
    if getattr(dataset, "size", None) and int(dataset.size) < pre.crop_size:
        raise UserError(f"the dataset's {dataset.size}x{dataset.size} images are smaller than the "
                        f"model's {pre.crop_size} crops")

    # Integer counts on the device, reduced once at the end (no per-batch host syncs).
    per_class_n = torch.zeros(n_data_classes, dtype=torch.int64, device=device)
    per_class_top1 = torch.zeros_like(per_class_n)
    per_class_top5 = torch.zeros_like(per_class_n)
    seen = np.zeros(n_total, dtype=np.int32)  # on the host: counting it there needs no device copy
    positions = shard(n_total, rank, world_size)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    desc = "evaluate" + (f" (rank 0 of {world_size})" if world_size > 1 else "")
    topk = 5
    try:
        with Progress(len(positions), desc, enabled=progress and rank == 0) as bar:
            pos = np.arange(positions.start, positions.stop)
            for batch_pos, squares in _iter_positions(dataset, all_indices, pos, batch_size, threads):
                y = torch.from_numpy(labels[all_indices[batch_pos]]).to(device, non_blocking=True)
                x = pre.crops(squares.to(device, non_blocking=True), ten_crop=crops == 10)
                if crops == 10:
                    b = x.shape[0]
                    scores = model(x.flatten(0, 1)).float().softmax(-1).view(b, 10, -1).mean(1)
                else:
                    scores = model(x).float()  # softmax is monotonic: logits rank classes the same
                topk = min(5, scores.shape[-1])
                target = mapping[y]
                top = scores.topk(topk, dim=-1).indices  # (B, k)
                hit1 = (top[:, 0] == target).long()
                hit5 = (top == target[:, None]).any(-1).long()
                per_class_n.index_add_(0, y, torch.ones_like(y))
                per_class_top1.index_add_(0, y, hit1)
                per_class_top5.index_add_(0, y, hit5)
                np.add.at(seen, batch_pos, 1)
                bar.update(len(batch_pos))
    finally:
        model.train(was_training)
    seen_all = torch.from_numpy(seen).to(device)
    if distributed:
        for t in (per_class_n, per_class_top1, per_class_top5, seen_all):
            dist.all_reduce(t)
    seen_cpu = seen_all.cpu()
    if not distributed:  # one process of a manual split (rank/world_size given): check its own shard
        seen_cpu = seen_cpu[positions.start:positions.stop]
    if not bool((seen_cpu == 1).all()):  # a sharding bug must never pass as a result
        raise RuntimeError(f"evaluation counted {int((seen_cpu == 0).sum())} images 0 times and "
                           f"{int((seen_cpu > 1).sum())} more than once")
    n, t1, t5 = per_class_n.cpu().tolist(), per_class_top1.cpu().tolist(), per_class_top5.cpu().tolist()
    per_class = []
    for j in range(n_data_classes):
        c = data_classes[j] if j < len(data_classes) else {}
        per_class.append({"index": j, "wnid": c.get("wnid"), "name": c.get("name"), "model_index": class_map[j],
                          "images": n[j], "top1_correct": t1[j], "top5_correct": t5[j]})
    return EvalResult(images=sum(n), crops=crops, top1_correct=sum(t1), top5_correct=sum(t5), topk=topk,
                      per_class=per_class, seconds=time.perf_counter() - start, world_size=world_size)


def _iter_positions(dataset, all_indices: np.ndarray, positions: np.ndarray, batch_size: int, threads: int | None):
    """Batches over ``positions`` (into ``all_indices``): (positions, squares)."""
    order = all_indices[positions]
    for k, (_, squares) in enumerate(iter_squares(dataset, order, batch_size, threads=threads)):
        yield positions[k * batch_size:(k + 1) * batch_size], squares
