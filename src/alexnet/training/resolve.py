"""From a config to what will run on this machine: the ``auto`` and ``None`` choices made, once.

``config.yaml`` in a run directory keeps what the user asked for (``device: auto``, ``compile: null``), so
that a resumed run chooses again on the machine it resumes on; ``resolved.yaml`` beside it says what
that choice was (``device: cuda:0``, ``precision: bf16``, ``compile: true``, ...), so a run directory
always tells what ran.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

from alexnet import runtime
from alexnet.errors import UserError
from alexnet.models import create_model, model_info
from alexnet.training.config import TrainConfig
from alexnet.training.distributed import DistContext


@dataclass(frozen=True)
class Resolved:
    device: torch.device
    precision: str  # "bf16" (autocast) or "fp32"
    compile: bool  # torch.compile
    channels_last: bool  # NHWC model and batches
    crop_size: int
    pixel_std: tuple[float, float, float] | None  # the model's normalisation after the mean (0..255 units)
    threads: int  # torch's operator threads in this process
    world_size: int
    batch_per_process: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["device"] = str(self.device)
        d["pixel_std"] = None if self.pixel_std is None else list(self.pixel_std)
        return d


def channels_last_pays(module: nn.Module, device: torch.device) -> bool:
    """NHWC by default on CUDA (tensor cores); on a CPU only for nets without grouped convolutions, which
    oneDNN runs as fast or faster in NCHW (chosen by measurement: docs/BENCHMARKS.md, "channels_last")."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    return not any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in module.modules())


def resolve(c: TrainConfig, dist: DistContext) -> Resolved:
    """Every choice ``c`` leaves to the machine, made for this process (or a one-line UserError)."""
    device = runtime.resolve_device(c.device, local_rank=dist.local_rank if dist.enabled else None)
    cuda = device.type == "cuda"
    if c.batch_size % dist.world_size:
        raise UserError(f"--batch-size {c.batch_size} must be divisible by the number of processes "
                        f"({dist.world_size}): it is the global batch")
    channels_last = c.channels_last
    if channels_last is None:
        with torch.device("meta"):  # the layers only, no memory or initialisation
            channels_last = channels_last_pays(create_model(c.arch, num_classes=2, **c.model_options), device)
    info = model_info(c.arch)
    # CPU: all the cores this process may use (shared between torchrun's local processes); an explicit
    # OMP_NUM_THREADS wins (on a machine shared with other jobs, fewer threads than cores avoid OpenMP
    # threads waiting for each other at every op).
    threads = runtime.cpu_share() if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ \
        else torch.get_num_threads()
    return Resolved(device=device, precision=c.precision if c.precision != "auto" else ("bf16" if cuda else "fp32"),
                    compile=c.compile if c.compile is not None else cuda, channels_last=bool(channels_last),
                    crop_size=c.crop_size or info.input_size, pixel_std=info.pixel_std, threads=threads,
                    world_size=dist.world_size, batch_per_process=c.batch_size // dist.world_size)


def apply(r: Resolved) -> None:
    """The process-wide settings of a resolved run: torch's threads, cuDNN's autotuner and TF32."""
    if torch.get_num_threads() != r.threads:
        torch.set_num_threads(r.threads)
    if r.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
