"""Many processes under ``torchrun``: the same command, DistributedDataParallel, one writer.

``torchrun --nproc_per_node=N [--nnodes=M --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT] -m alexnet train``
sets RANK, LOCAL_RANK and WORLD_SIZE; each process then trains on its own shard of every global batch,
the gradients are averaged by DDP, the metrics are summed over processes, and only rank 0 writes files.
Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from alexnet.errors import UserError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def all_reduce_max(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    def all_gather_tensor(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of ``t`` (same shape on each rank), on every rank."""
        if not self.enabled:
            return [t]
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device_type: str) -> DistContext:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    initialized_here = False
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            if local_rank >= torch.cuda.device_count():  # more processes on this node than GPUs
                raise UserError(f"torchrun started process LOCAL_RANK={local_rank} but this machine has "
                                f"{torch.cuda.device_count()} GPU(s): --nproc_per_node at most that, or --device cpu")
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        initialized_here = True
    return DistContext(rank, world_size, local_rank, local_world_size, initialized_here)
