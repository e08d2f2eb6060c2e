"""Loss and top-1/top-5 error, accumulated on the device without a host synchronisation per step.

Correct predictions are counted as integers (exact in float64 up to 2^53 images) and read once per log
interval or epoch; under DistributedDataParallel the counts are summed over processes before the division.
"""

from __future__ import annotations

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

    @torch.no_grad()
    def update(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, step: int | None = None) -> None:
        n = target.shape[0]
        top1, top5 = correct_topk(logits, target)
        loss = loss.detach().to(self.sums.dtype)
        self.sums += torch.stack([loss * n, top1.to(self.sums.dtype), top5.to(self.sums.dtype)])
        self.images += n
        if step is not None:
            bad = torch.where(torch.isfinite(loss), float("inf"), float(step))
            torch.minimum(self.first_bad_step, bad.to(self.first_bad_step.dtype), out=self.first_bad_step)

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
