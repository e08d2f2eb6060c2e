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
    compile_mode: str  # its mode ("default", "reduce-overhead": CUDA graphs, ...)
    grouped_conv: str  # how conv2/4/5 of the two-tower nets run (alexnet.models.layers.GroupedConv2d)
    channels_last: bool  # NHWC model and batches
    augment: str  # where the loader augments: "batched" (the training thread, one step per batch; CUDA) or
    # "workers" (its worker threads, image by image; CPU): alexnet.data.loader
    crop_size: int
    pixel_std: tuple[float, float, float] | None  # the model's normalisation after the mean (0..255 units)
    threads: int  # torch's operator threads in this process
    world_size: int
    batch_per_process: int
    compile_cache: str | None = None  # where torch.compile's caches live (compile_cache_dir), when compiling
    cuda_graph: bool = False  # the training step captured as one CUDA graph (alexnet.training.graph); with
    # --cuda-graph on a CPU the same step runs uncaptured

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
    compile_ = c.compile if c.compile is not None else cuda
    if c.batch_size % dist.world_size:
        raise UserError(f"--batch-size {c.batch_size} must be divisible by the number of processes "
                        f"({dist.world_size}): it is the global batch")
    if c.cuda_graph and dist.enabled:
        raise UserError(f"--cuda-graph captures one process's step; it does not run under torchrun "
                        f"({dist.world_size} processes): drop --cuda-graph")
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
                    compile=compile_, compile_mode=c.compile_mode,
                    grouped_conv=c.grouped_conv, channels_last=bool(channels_last),
                    augment=c.augment_on if c.augment_on != "auto" else ("batched" if cuda else "workers"),
                    crop_size=c.crop_size or info.input_size, pixel_std=info.pixel_std, threads=threads,
                    world_size=dist.world_size, batch_per_process=c.batch_size // dist.world_size,
                    compile_cache=compile_cache_dir() if compile_ else None, cuda_graph=c.cuda_graph and cuda)


def compile_cache_dir() -> str:
    """Where torch.compile keeps what it compiled (inductor's FX graph cache, AOTAutograd's cache, Triton's
    kernels), so that the next run on this machine loads it instead of compiling again (40 s for the
    paper's net on an H200; docs/TRAINING.md): ``$TORCHINDUCTOR_CACHE_DIR`` if set, else torch's own
    default, ``<tmp>/torchinductor_<user>``, which lasts across runs but not necessarily across reboots."""
    path = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not path:
        try:
            from torch._inductor.runtime.cache_dir_utils import default_cache_dir
        except ImportError:  # an older torch: its default was the same
            import getpass
            import tempfile

            def default_cache_dir() -> str:
                return os.path.join(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}")
        path = default_cache_dir()
    return os.path.abspath(path)


def enable_compile_caches() -> None:
    """Inductor's FX graph cache and AOTAutograd's cache on (recent torch's defaults; older ones had
    them off), unless the environment says otherwise (``TORCHINDUCTOR_FX_GRAPH_CACHE=0``,
    ``TORCHINDUCTOR_AUTOGRAD_CACHE=0``)."""
    from torch._inductor import config as inductor

    if "TORCHINDUCTOR_FX_GRAPH_CACHE" not in os.environ:
        inductor.fx_graph_cache = True
    try:
        from torch._functorch import config as functorch
    except ImportError:
        return
    if hasattr(functorch, "enable_autograd_cache") and "TORCHINDUCTOR_AUTOGRAD_CACHE" not in os.environ:
        functorch.enable_autograd_cache = True


def apply(r: Resolved) -> None:
    """The process-wide settings of a resolved run: torch's threads, cuDNN's autotuner and TF32, the
    compile caches."""
    if torch.get_num_threads() != r.threads:
        torch.set_num_threads(r.threads)
    if r.compile:
        enable_compile_caches()
    if r.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
