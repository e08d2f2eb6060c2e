"""Where code runs: the CPUs this process may use, the device, and its place among torchrun's processes.

One policy for every subcommand and library entry point:
- CPUs: the CPUs this process may run on (its affinity mask, as a container or ``taskset`` sets it),
  shared evenly between the processes torchrun started on this node (``LOCAL_WORLD_SIZE``).
- Device: ``"auto"`` is CUDA when a GPU is visible, else the CPU; asking for CUDA (or MPS) where there is
  none is a one-line error; under torchrun, ``"cuda"`` is the GPU of the process's ``LOCAL_RANK``.
- Rank and world size: the initialised process group's (data is sharded only between processes that
  joined one); who prints and writes: rank 0 of the group, else of torchrun's environment (``RANK``).
"""

from __future__ import annotations

import os

import torch

from alexnet.errors import UserError


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS, Windows)
        return os.cpu_count() or 1


def cpu_share() -> int:
    """This process's share of the CPUs: all of them, or an even share under torchrun (at least 1)."""
    return max(1, cpus() // max(1, _env_int("LOCAL_WORLD_SIZE", 1)))


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this is the process that prints results and writes files: rank 0 of the process group,
    else of torchrun's environment (also after the group is gone), else the only process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return _env_int("RANK", 0) == 0


def indexed(device: str | torch.device) -> torch.device:
    """``device`` with its index: a bare ``"cuda"`` becomes the current GPU (``cuda:N``), which is what
    ``torch.cuda.set_device`` and per-thread streams need; other devices are returned as given."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_device(name: str | None = "auto", *, local_rank: int | None = None) -> torch.device:
    """The device for ``name`` ("auto" or None, "cpu", "cuda", "cuda:N", "mps"), or a one-line UserError.

    ``local_rank``: set under torchrun (several processes), where each takes the GPU of its LOCAL_RANK and
    an explicit "cuda:N" is refused (every process would share one GPU: NCCL refuses or hangs)."""
    name = (name or "auto").strip()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if local_rank is not None:
            if name != "cuda":
                raise UserError(f"--device {name} under torchrun: use --device cuda (each process takes the "
                                "GPU of its LOCAL_RANK; CUDA_VISIBLE_DEVICES picks which GPUs)")
            return torch.device("cuda", local_rank)
        try:
            device = torch.device(name if ":" in name else "cuda:0")
        except RuntimeError:
            raise UserError(f"--device {name}: not a device (auto, cpu, cuda, cuda:N, mps)") from None
        if device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
        return device
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("--device mps: MPS is not available on this machine")
        return torch.device("mps")
    if name != "cpu":
        raise UserError(f"--device {name}: not a device (auto, cpu, cuda, cuda:N, mps)")
    return torch.device("cpu")
