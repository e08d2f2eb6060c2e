"""Loss and top-1/top-5 error, accumulated on the device without a host synchronisation per step.

Correct predictions are counted as integers (exact in float64 up to 2^53 images) and read once per log
interval or epoch; under DistributedDataParallel the counts are summed over processes before the division.
:class:`WallClock` says where a run's wall-clock time went (summary.json's ``time``).
"""

from __future__ import annotations

import contextlib
import time

import torch


def correct_topk(logits: torch.Tensor, target: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-1 correct, top-k correct) counts of a batch, as 0-d tensors on the logits' device."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices  # (B, k)
    hit = top.eq(target.unsqueeze(-1))  # (B, k)
    return hit[:, 0].sum(), hit.any(dim=-1).sum()


class Meter:
    """Running sums ``[loss * images, top-1 correct, top-5 correct]`` on the device, images on the host.

    Also remembers the first step whose loss was not finite (inf when none), again without syncing.
    (The image count stays a Python int: making a device tensor of it every step would be a host-to-device
    copy from pageable memory, which synchronises.)
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self.sums = torch.zeros(3, dtype=dtype, device=self.device)
        self.images = 0
        self.first_bad_step = torch.full((), float("inf"), dtype=dtype, device=self.device)

    def update(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, step: int | None = None) -> None:
        """Add a batch: its mean ``loss``, its ``logits`` against ``target``; ``step``: its index, remembered
        if the loss is not finite."""
        self.accumulate(loss, logits, target, step)
        self.count(target.shape[0])

    @torch.no_grad()
    def accumulate(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
                   step: int | torch.Tensor | None = None) -> None:
        """The device side of :meth:`update` (what a CUDA graph captures; ``step`` may be a 0-dim device
        tensor): the sums and the first non-finite step, not the image count (:meth:`count`)."""
        n = target.shape[0]
        top1, top5 = correct_topk(logits, target)
        loss = loss.detach().to(self.sums.dtype)
        self.sums += torch.stack([loss * n, top1.to(self.sums.dtype), top5.to(self.sums.dtype)])
        if step is not None:
            step = step.to(self.first_bad_step.dtype) if isinstance(step, torch.Tensor) else float(step)
            bad = torch.where(torch.isfinite(loss), float("inf"), step)
            torch.minimum(self.first_bad_step, bad.to(self.first_bad_step.dtype), out=self.first_bad_step)

    def count(self, images: int) -> None:
        self.images += int(images)

    def reset(self) -> None:
        self.sums.zero_()
        self.images = 0
        self.first_bad_step.fill_(float("inf"))

    def load(self, values: list[float]) -> None:
        """Restore from :meth:`values` (a checkpoint)."""
        self.sums.copy_(torch.tensor(values[:3], dtype=self.sums.dtype))
        self.images = int(values[3])

    def values(self) -> list[float]:
        """``[loss * images, top-1 correct, top-5 correct, images]`` on the host (one synchronisation)."""
        return [float(v) for v in self.sums.tolist()] + [float(self.images)]

    def reduced(self, all_reduce_sum=None) -> list[float]:
        """:meth:`values` summed over processes (``all_reduce_sum`` from the DDP context), on every rank."""
        if all_reduce_sum is None:
            return self.values()
        t = torch.cat([self.sums, torch.tensor([float(self.images)], dtype=self.sums.dtype, device=self.device)])
        return [float(v) for v in all_reduce_sum(t).tolist()]

    def bad_step(self) -> int | None:
        """The first step with a non-finite loss since the last reset, or None (one synchronisation)."""
        v = float(self.first_bad_step)
        return None if v == float("inf") else int(v)


def errors_from_sums(sums: list[float]) -> dict[str, float]:
    """``{"loss", "top1_err", "top5_err", "images"}`` from the sums; NaN when nothing was seen."""
    loss, top1, top5, n = sums
    if n == 0:
        nan = float("nan")
        return {"loss": nan, "top1_err": nan, "top5_err": nan, "images": 0}
    return {"loss": loss / n, "top1_err": 1.0 - top1 / n, "top5_err": 1.0 - top5 / n, "images": int(n)}


PHASES = ("setup", "compilation", "training", "validation", "checkpoints", "final_evaluation", "weights")
"""A run's phases, as :class:`WallClock` counts them: ``setup`` (data, model, run directory, until the
first step), ``compilation`` (a compiled run's first step, and its first evaluation batch), ``training``
(the training loop: steps and waiting for batches), ``validation`` (every epoch's), ``checkpoints`` (copying
the state for a checkpoint, and waiting for the writer thread: its checkpoints, ``metrics.csv`` and
``curves.png`` are otherwise written beside training), ``final_evaluation`` (the 10 crops), ``weights``
(the ``.safetensors`` file). A resumed run counts from its resume."""


class WallClock:
    """Seconds per phase of a run (:data:`PHASES`) on this process's host clock, and ``other``: the rest
    of the time since the clock was made (epoch bookkeeping, logging, TensorBoard). A phase on a GPU ends
    where the host waits for it (the trainer does at an epoch's last step)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds = dict.fromkeys(PHASES, 0.0)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds

    @contextlib.contextmanager
    def phase(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t)

    def summary(self) -> dict[str, float]:
        """``{"total_s", "setup_s", ..., "other_s"}`` (seconds, rounded to ms)."""
        total = time.perf_counter() - self.start
        out = {"total_s": round(total, 3), **{f"{k}_s": round(v, 3) for k, v in self.seconds.items()}}
        # the rest; below zero only if phases were counted twice (a bug to see, not to hide)
        out["other_s"] = round(total - sum(self.seconds.values()), 3)
        return out

    @staticmethod
    def describe(summary: dict[str, float]) -> str:
        """One line: the total, then each phase that took time, largest first, with its share."""
        total = summary["total_s"]
        parts = sorted(((v, k[:-2].replace("_", " ")) for k, v in summary.items() if k != "total_s" and v >= 0.05),
                       reverse=True)
        return f"time: {_seconds(total)} in all; " + ", ".join(
            f"{name} {_seconds(v)} ({100 * v / max(total, 1e-9):.0f}%)" for v, name in parts)


def _seconds(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec} s" if m < 60 else f"{m // 60} h {m % 60} min"
