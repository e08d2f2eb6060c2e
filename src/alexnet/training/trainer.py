"""The trainer: the paper's recipe on one device or many, resumable bit for bit.

    from alexnet.training import TrainConfig, train
    result = train(TrainConfig(data="data/imagenette", epochs=30))
    result.history[-1]["val_top1_err"], result.run_dir

One step: the batch (already augmented and normalised on the device by :class:`alexnet.data.Loader`)
goes through the model under autocast (bf16 on CUDA), the cross-entropy is backpropagated, the optimizer
(the paper's update by default) steps with the lr the schedule gives for this step, and the loss and the
top-1/top-5 hits are added to sums that stay on the device. The host reads them once per log interval
(``log_interval`` steps), which is also when a non-finite loss is noticed; on a CPU there is nothing to
overlap, so it looks at every step. Each epoch ends with a validation pass (centre crop), a row in
``metrics.csv`` and the ``last`` checkpoint; the run ends with the paper's 10-crop evaluation and the
weights as ``.safetensors``. Checkpoints, metrics.csv and curves.png are written from a host copy on a
background thread while training goes on (:mod:`alexnet.training.writer`: one write in flight, each
file still atomic; the run waits for the last one before it returns).

Exact resume: a checkpoint holds the weights, the optimizer's velocities, the schedule's state, the
position (epoch, batch), the partial epoch's sums and every process's RNG state; the loader rebuilds the
epoch's order and augmentation from (seed, epoch) and restarts at the batch (``Loader.iter_from``). On a
CPU, training K steps in one go and training with a kill and ``--resume`` in between give bitwise equal
weights (tests/test_training_resume.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet import runtime
from alexnet.errors import UserError
from alexnet.files import write_atomic
from alexnet.models import create_model, set_grouped_conv
from alexnet.models.init import initialize
from alexnet.models.layers import InputSizeError
from alexnet.models.registry import check_input_size
from alexnet.progress import Progress, TrainingProgress, count
from alexnet.training import checkpoint as ckpt
from alexnet.training import rundir
from alexnet.training.config import TrainConfig, departures, save_config_file, warmup_steps
from alexnet.training.datasets import run_datasets
from alexnet.training.distributed import init_distributed
from alexnet.training.metrics import Meter, WallClock, errors_from_sums
from alexnet.training.optim import build_optimizer
from alexnet.training.resolve import apply as apply_resolved
from alexnet.training.resolve import resolve
from alexnet.training.schedule import CHANCE_MARGIN, build_schedule
from alexnet.training.writer import BackgroundWriter, host_copy

STALLED_LOSS_TOLERANCE = 0.02
"""An epoch whose training loss is within this share of a constant guess's loss is at chance level."""
DEAD_CHECK_TOLERANCE = 0.05
"""An epoch whose training loss is within this share of a constant guess's has the last hidden layer
looked at: a net whose ReLUs died can keep a few units and a hair better than chance (docs/RECIPE.md)."""
DEAD_UNITS = 0.05
"""Below this share of the last hidden layer's units responding to any image, a net at chance is dead."""
BEST_NOTE_MARGIN = 0.01
"""The final validation error this much (absolute) above the best epoch's: the run says where the best is."""
LEARNED_MARGIN = 0.10
"""An earlier epoch whose training top-1 error was this far (absolute) below chance had learned: a later
epoch back at chance is a collapse (the learning rate too high), not a net that has yet to start."""
CURVES_TITLE_DATA_CHARS = 60
"""A data path longer than this is shown by its last two folders in curves.png's title (a 150-character
absolute path ran off both edges)."""
PROBE_IMAGES = 64
CURVES_EVERY_S = 30.0
"""``curves.png`` is redrawn at an epoch's end when this many seconds have passed since its last drawing,
and at the end of the run. Drawing it is pure Python (matplotlib), and the writer thread that does it
holds the GIL that the training thread needs to launch every kernel, which slows the training thread
severalfold while it draws (measured: docs/TRAINING.md, "The run directory"). On a GPU, whose epochs of a
small dataset last under a second, drawing every epoch would cost a large share of the training time;
the other files (``last.pt``, ``metrics.csv``) stay every epoch."""


def label_chance(dataset, indices, num_classes: int) -> dict:
    """What a constant guess achieves on ``dataset[indices]``: the error of always answering the most
    frequent class (``err``) and the cross-entropy of always answering the class frequencies (``loss``, the
    entropy of the labels: ln(classes) when they are balanced)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return {"err": 1.0 - 1.0 / num_classes, "loss": math.log(num_classes)}
    labels = np.asarray(labels)
    if indices is not None:
        labels = labels[np.asarray(indices)]
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if counts.sum() == 0:
        return {"err": 1.0 - 1.0 / num_classes, "loss": math.log(num_classes)}
    share = counts / counts.sum()
    nz = share[share > 0]
    return {"err": float(1.0 - share.max()), "loss": float(-(nz * np.log(nz)).sum()), "present": len(nz)}


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; training stopped without writing a checkpoint."""


@dataclass
class TrainResult:
    """What :func:`train` gives back."""

    config: TrainConfig
    run_dir: Path | None
    history: list[dict] = field(default_factory=list)
    """One dict per epoch with the metrics.csv columns (errors as fractions)."""
    final: dict = field(default_factory=dict)
    """``val_top1_err``, ``val_top5_err`` (centre crop), ``ten_crop_top1_err``, ``ten_crop_top5_err``,
    ``steps``, ``epochs``, ``seconds``; errors are fractions, None without validation data. ``time``: where
    the ``seconds`` (since the trainer was built) went, per phase (:class:`~alexnet.training.metrics.WallClock`)."""
    weights: Path | None = None
    interrupted: str | None = None
    """``"SIGINT"`` / ``"SIGTERM"`` when a signal stopped the run (a checkpoint was saved), else None."""
    model: nn.Module | None = None
    """The trained model (eval mode, on the training device)."""


class _StopRequest:
    """SIGINT/SIGTERM set a flag that the step loop reads: the run saves a checkpoint and returns.

    A second SIGINT while stopping raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class Trainer:
    """One training run. Build it, then :meth:`run`. Most callers use :func:`train` / :func:`resume`."""

    def __init__(self, config: TrainConfig, *, dataset=None, val_dataset=None, run_dir: str | Path | None = None,
                 state: dict | None = None, progress: bool | None = True,
                 callback: Callable[[dict], bool | None] | None = None, handle_signals: bool = True,
                 fresh: bool = False, resume_hint: bool = True) -> None:
        self.clock = WallClock()  # where the run's time goes: summary.json's "time"
        c = self.config = config
        self.dist = init_distributed("cuda" if c.device.startswith("cuda") or
                                     (c.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.resolved = resolve(c, self.dist)
        apply_resolved(self.resolved)
        self.device, self.main = self.resolved.device, self.dist.is_main
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if fresh and run_dir is not None:
            self._on_rank0(lambda: rundir.check_fresh(Path(run_dir)))
        self.callback, self.handle_signals, self.stop = callback, handle_signals, _StopRequest()
        self.resume_hint = resume_hint  # say how to continue a stopped run (False: the caller says it)
        self.progress = TrainingProgress(enabled=progress is not False and self.main, epochs=c.epochs)
        self._build_data(c, dataset, val_dataset)
        self.top5 = self.progress.top5 = len(self.classes) > 5  # top-5 of 5 classes or fewer: always right
        self._build_model(c)
        self._build_optimization(c)
        # position and history (from a checkpoint when resuming)
        self.epoch, self.batch, self.step = 0, 0, 0
        self.history: list[dict] = []
        self.best: dict = {"val_top1_err": None, "epoch": None}
        self.epoch_seconds = self.epoch_train_seconds = 0.0
        if state is not None:
            self._load_state(state)
        self.started_at_step = self.step  # a resumed run's clock starts here (summary.json says so)
        self.tb = None
        self.writes = BackgroundWriter()  # rank 0's files, written while training goes on
        self._stall_reported: set[str] = set()  # "dead" / "plateau": each said once
        self.graphed = None  # --cuda-graph: the step (alexnet.training.graph.GraphedStep), at the first step
        self._compiled = False  # a compiled run's first step (the compilation) is behind us
        self._curves_drawn_at, self._curves_epochs = -math.inf, 0  # when curves.png was last drawn, of how many epochs
        self._eval_compiled = False  # ... and its first evaluation

    def _build_data(self, c: TrainConfig, dataset, val_dataset) -> None:
        """Datasets and loaders (this process's shard of every batch)."""
        from alexnet.data import jpeg

        r = self.resolved
        self.demo = dataset is None and c.data is None
        self.given_in_memory = dataset is not None  # (a subset, say: `alexnet train --resume` cannot rebuild it)
        data = run_datasets(c, dataset, val_dataset)
        self.dataset, self.val_dataset, self.data_desc = data.train, data.val, data.train_desc
        self.classes = list(self.dataset.classes)
        # the JPEG decoder is chosen (and a bad ALEXNET_JPEG_DECODER refused) before the run directory is made
        self.jpeg_decoder = jpeg.decoder(self.device) if getattr(self.dataset, "storage", "") == "jpeg" else None
        if r.crop_size > self.dataset.size:
            raise UserError(f"crop size {r.crop_size} is larger than the {self.dataset.size}x{self.dataset.size} "
                            "images of the dataset (set --crop-size)")
        labels = getattr(self.dataset, "labels", None)
        if labels is not None:
            held = np.asarray(labels) if data.train_idx is None else np.asarray(labels)[np.asarray(data.train_idx)]
            if len(held) and len(np.unique(held)) < 2:  # 0% error from the first step, and nothing learned
                raise UserError(f"the training images ({self.data_desc}) are all of one class: a classifier "
                                "needs images of at least 2")
        self.train_loader = self.loader(self.dataset, train=True, indices=data.train_idx)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise UserError(f"{len(self.train_loader.indices)} training images do not fill one batch of "
                            f"{c.batch_size}; lower --batch-size")
        self.val_loader = None
        if self.val_dataset is not None and (data.val_idx is None or len(data.val_idx)):
            self.val_loader = self.loader(self.val_dataset, train=False, indices=data.val_idx)

    def loader(self, dataset, *, train: bool, indices=None, ten_crop: bool = False, augment: str | None = None):
        """A :class:`~alexnet.data.Loader` over ``dataset`` as this run builds its loaders: this process's
        share of every batch, the run's crop, mean, std, memory format and loader path (``augment``
        overrides it). Training batches' augmentation is compiled with the model (one kernel per step);
        evaluation's (a crop and the mean) is not worth compiling for its every batch shape."""
        from alexnet.data import Loader

        c, r = self.config, self.resolved
        return Loader(dataset, r.batch_per_process, train=train, lighting=c.lighting if train else 0.0,
                      ten_crop=ten_crop, indices=indices, crop_size=r.crop_size, device=self.device, seed=c.seed,
                      mean=c.mean, std=r.pixel_std, rank=self.dist.rank, world_size=self.dist.world_size,
                      workers=c.workers, channels_last=r.channels_last, augment=augment or r.augment,
                      compile=r.compile and train)

    def _build_model(self, c: TrainConfig) -> None:
        """The initialised model on the device, its DDP / compiled forms for training and evaluation."""
        r = self.resolved
        torch.manual_seed(c.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        self.module = initialize(create_model(c.arch, num_classes=len(self.classes), **c.model_options),
                                 c.init).to(self.device)
        set_grouped_conv(self.module, r.grouped_conv)
        try:  # before the run directory is made: a crop the net cannot take (alexnet_owt at 32) is one line
            check_input_size(self.module, r.crop_size)
        except InputSizeError as e:
            raise UserError(f"--crop-size {r.crop_size}: {e}") from None
        # what alexnet.load(run_dir) gives the same weights: TrainResult.model predicts with the run's classes
        # and mean image, and save_weights(path, result.model) writes them
        from alexnet.weights.preprocess import Preprocess

        self.module.meta.classes = [dict(cl) for cl in self.classes]
        self.module.meta.preprocess = Preprocess.from_metadata(
            self._preprocess_metadata(), self.dataset.mean_image if c.mean == "image" else None)
        if r.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        torch.manual_seed(c.seed + self.dist.rank)  # dropout masks differ between ranks
        model: nn.Module = self.module
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # torch.compile the DDP-wrapped model (DDP's graph breaks let gradient all-reduce overlap backward)
        mode = None if r.compile_mode == "default" else r.compile_mode
        self.train_model = torch.compile(model, mode=mode) if r.compile else model
        self.eval_model = torch.compile(self.module, mode=mode) if r.compile else self.module

    def _build_optimization(self, c: TrainConfig) -> None:
        """Optimizer, lr schedule (with the warm-up and the chance level it watches) and the step meter."""
        self.optimizer = build_optimizer(c.optimizer, self.module, lr=c.lr, momentum=c.momentum,
                                         weight_decay=c.weight_decay, bias_decay=c.bias_decay,
                                         bias_lr_factor=c.bias_lr_factor,
                                         # torch's SGD reads a tensor lr on the device only when fused
                                         fused=c.fused_optimizer or (c.cuda_graph and c.optimizer != "paper"))
        self.total_steps = min(c.epochs * self.steps_per_epoch, c.max_steps or math.inf)
        # Chance level: what a constant guess (the most frequent class) achieves, in error and in loss.
        self.train_chance = label_chance(self.dataset, self.train_loader.indices, len(self.classes))
        val_chance = None if self.val_loader is None else label_chance(
            self.val_dataset, self.val_loader.indices, len(self.classes))
        self.warmup_steps = warmup_steps(c, self.steps_per_epoch)
        self.schedule = build_schedule(c.schedule, base_lr=c.lr, total_steps=self.total_steps, patience=c.patience,
                                       factor=c.lr_factor, max_reductions=c.max_reductions,
                                       step_size=c.step_size, min_lr=c.min_lr, warmup_steps=self.warmup_steps,
                                       chance_err=(val_chance or self.train_chance)["err"])
        self.meter = Meter(self.device)

    def _on_rank0(self, fn: Callable[[], None]) -> None:
        """Run a check on rank 0 only; if it fails every rank raises (instead of the others hanging)."""
        message = ""
        if self.main:
            try:
                fn()
            except UserError as e:
                message = str(e)
        if self.dist.enabled:
            flag = torch.tensor([float(bool(message))], device=self.device if self.device.type == "cuda" else "cpu")
            self.dist.all_reduce_max(flag)
            if flag.item() and not message:
                message = "rank 0 refused to start (see its message)"
        if message:
            self.dist.close()
            raise UserError(message)

    # ------------------------------------------------------------------------------------------ state
    def _gather_rng(self) -> dict:
        """Every rank's RNG state (a collective under DDP: all ranks call it at the same step)."""
        cpu = torch.get_rng_state()
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        if not self.dist.enabled:
            return {"cpu": [cpu], "cuda": [] if cuda is None else [cuda]}
        comm = self.device if self.device.type == "cuda" else torch.device("cpu")  # NCCL needs CUDA tensors
        cpus = [t.cpu() for t in self.dist.all_gather_tensor(cpu.to(comm))]
        cudas = [] if cuda is None else [t.cpu() for t in self.dist.all_gather_tensor(cuda.to(comm))]
        return {"cpu": cpus, "cuda": cudas}

    def _set_rng(self, rng: dict) -> None:
        cpus, cudas = rng.get("cpu", []), rng.get("cuda", [])
        if cpus:
            torch.set_rng_state(cpus[self.dist.rank % len(cpus)])
        if cudas and self.device.type == "cuda":
            torch.cuda.set_rng_state(cudas[self.dist.rank % len(cudas)], self.device)

    def _check_optimizer_state(self) -> None:
        """After ``optimizer.load_state_dict``: each buffer shaped, typed and placed as its parameter, its
        learning rates finite numbers (torch copies a checkpoint's values in as they are)."""
        import math

        for group in self.optimizer.param_groups:
            lr = group.get("lr")
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
                raise ValueError(f"a learning rate of {str(lr)[:40]!r}")
            for p in group["params"]:
                for name, buf in self.optimizer.state.get(p, {}).items():
                    if isinstance(buf, torch.Tensor) and buf.dim() and (buf.shape != p.shape or buf.dtype != p.dtype):
                        raise ValueError(f"an optimizer {name} of shape {tuple(buf.shape)} {buf.dtype} for a "
                                         f"parameter of {tuple(p.shape)} {p.dtype}")

    def _load_threads(self, threads) -> None:
        """On a CPU, continue with as many operator threads as the run trained with (reductions split over
        threads round differently; the same count continues it bitwise as if never stopped), unless the
        threads were given (``--threads``, ``OMP_NUM_THREADS``): then say that it will not be exact."""
        if self.device.type != "cpu" or not isinstance(threads, int) or isinstance(threads, bool) \
                or threads == self.resolved.threads or threads < 1:
            return
        given = "OMP_NUM_THREADS" in os.environ
        if not given and threads <= runtime.cpus():
            self.resolved = dataclasses.replace(self.resolved, threads=threads)
            apply_resolved(self.resolved)
            self.progress.log(f"continuing with {count(threads, 'thread')}, as the run trained (--threads N "
                              "for another count, which continues it less exactly)")
            return
        self.progress.log(f"note: the run trained with {count(threads, 'thread')} and continues with "
                          f"{self.resolved.threads}: on a CPU its sums then round differently, so it will not "
                          f"repeat an uninterrupted run exactly (--threads {threads} for that)")

    def state_dict(self) -> dict:
        """The checkpoint (plain tensors and primitives only): a copy on the host that training does not
        change (so that it can be written while training goes on)."""
        return host_copy({
            "config": self.config.to_dict(),
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "position": {"epoch": self.epoch, "batch": self.batch, "step": self.step},
            "meter": self.meter.values(),
            "epoch_seconds": self.epoch_seconds,
            "epoch_train_seconds": self.epoch_train_seconds,
            "history": self.history,
            "best": self.best,
            "world_size": self.dist.world_size,
            # a CPU's sums round by the threads: a resume takes the same (_load_threads)
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            "rng": self._gather_rng(),
            "arch": self.config.arch,
            "model_options": dict(self.config.model_options),
            "classes": self.classes,
        })

    def _load_state(self, state: dict) -> None:
        try:
            self._load_tensors(state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"the checkpoint does not fit this run's model, optimizer or schedule ({first})") from None

    def _load_tensors(self, state: dict) -> None:
        own = self.module.state_dict()
        for k, t in state["model"].items():  # load_state_dict would cast an int32 tensor in silently
            if k in own and isinstance(t, torch.Tensor) and t.dtype != own[k].dtype:
                raise ValueError(f"the model's {k} holds {t.dtype}, not {own[k].dtype}")
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._check_optimizer_state()
        self.schedule.load_state_dict(state["schedule"])
        pos = state["position"]
        self.epoch, self.batch, self.step = int(pos["epoch"]), int(pos["batch"]), int(pos["step"])
        if self.batch > self.steps_per_epoch:
            raise UserError("the checkpoint's position does not fit this data (a different dataset or batch?)")
        self.history = list(state["history"])
        self.best = dict(state["best"])
        self.epoch_seconds = float(state.get("epoch_seconds", 0.0))
        self.epoch_train_seconds = float(state.get("epoch_train_seconds", 0.0))
        self.meter.load(state["meter"])
        self._load_threads(state.get("threads"))
        wrote = int(state.get("world_size", 1))
        if wrote != self.dist.world_size:
            self.progress.log(f"note: checkpoint written by {wrote} processes, resumed by {self.dist.world_size}: "
                              "the data order stays, the random numbers (dropout) differ, so the run continues "
                              f"but does not repeat the {wrote}-process one exactly; to continue it exactly, "
                              f"resume it with torchrun --nproc_per_node {wrote}")
        self._rng_to_restore = state.get("rng")

    def save(self, name: str = rundir.LAST) -> Path | None:
        """Checkpoint ``name``: every rank gathers the state (the RNG gather is a collective); rank 0
        writes it on the background writer, after the previous writes have finished (whose error is
        raised here). Returns the path being written."""
        self.writes.wait()
        state = self.state_dict()
        path = None
        if self.main and self.run_dir is not None:
            path = self.run_dir / name
            self.writes.submit((name, lambda: ckpt.save_checkpoint(state, path)))
        self.dist.barrier()
        return path

    # ------------------------------------------------------------------------------------------ steps
    def _autocast(self, cache: bool = True):
        """bf16 autocast when the run is mixed precision; ``cache=False`` for a CUDA graph's capture."""
        if self.resolved.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=cache)
        return contextlib.nullcontext()

    def _forward_loss(self, x: torch.Tensor, y: torch.Tensor, *, cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast(cache):
            logits = self.train_model(x)
        return logits, F.cross_entropy(logits.float(), y)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One SGD step on a batch (this process's shard): the lr of the schedule, forward, loss, backward,
        update; the loss and errors go to the meter without a host sync. With ``--cuda-graph`` the step
        is :class:`~alexnet.training.graph.GraphedStep`'s (captured on CUDA after a few steps)."""
        lr = self.schedule.lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        if self.config.cuda_graph:
            self._graphed_step(x, y)
        else:
            logits, loss = self._forward_loss(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.meter.update(loss, logits, y, step=self.step)
        self.step += 1
        self.lr = lr

    def _graphed_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        from alexnet.training.graph import GraphedStep

        if self.graphed is None:  # made at the first step, after a resume has set the step and the state
            self.graphed = GraphedStep(lambda x, y: self._forward_loss(x, y, cache=False), self.optimizer,
                                       self.meter, device=self.device, step=self.step,
                                       capture=self.resolved.cuda_graph)
            if not self.resolved.cuda_graph:
                self.progress.log(f"note: no CUDA graph on {self.device.type} (--cuda-graph needs a GPU): the "
                                  "same step runs uncaptured")
        captured = self.graphed.graph is not None
        self.graphed(x, y, [g["lr"] for g in self.optimizer.param_groups])
        if not captured and self.graphed.graph is not None:
            dt = self.graphed.capture_seconds
            self.clock.add("compilation", dt)
            self.clock.add("training", -dt)  # counted by the training loop: moved to compilation
            self.progress.log(f"captured the training step as a CUDA graph in {dt:.1f} s")

    def _announce_compilation(self) -> float:
        """A compiled run's first step compiles the model (40 s for the paper's net on an H200, a cold
        cache), and the loader's first training batch its augmentation: said before, so that a still
        progress bar is not taken for a hang. Returns the time it started."""
        cache = self.resolved.compile_cache
        self.progress.log("compiling the model (the first step; a later run on this machine loads it from the "
                          f"compile cache{f', {cache}' if cache else ''})")
        return time.perf_counter()

    def _first_compiled_step(self, x: torch.Tensor, y: torch.Tensor, since: float) -> None:
        """The first step, timed with the first batch's fetch (from ``since``) as the compilation."""
        self.train_step(x, y)
        self._compiled = True
        dt = time.perf_counter() - since
        self.clock.add("compilation", dt)
        self.clock.add("training", -dt)  # the training loop's time includes it: moved to compilation
        self.progress.log(f"compiled in {dt:.0f} s")

    def _check(self, *, collective: bool) -> bool:
        """At a sync point: raise on a non-finite loss; True if a stop signal was received.

        Under DDP every rank calls this at the same steps and they agree (one small all-reduce)."""
        bad = self.meter.bad_step()
        stop = self.stop.signal is not None
        if collective and self.dist.enabled:
            flags = torch.tensor([float(stop), -(bad if bad is not None else math.inf)],
                                 device=self.device if self.device.type == "cuda" else "cpu")
            self.dist.all_reduce_max(flags)
            stop = bool(flags[0] > 0)
            bad = None if math.isinf(float(flags[1])) else int(-float(flags[1]))
        if bad is not None:
            self.writes.close(report=_say_error)  # the checkpoint in flight (a good one) lands first
            last = ""
            if self.run_dir is not None and (self.run_dir / rundir.LAST).exists():
                last = f"; the last good checkpoint is {self.run_dir / rundir.LAST}"
            raise NonFiniteLossError(
                f"the loss is not finite at step {bad + 1} (epoch {self.epoch + 1}); training stopped{last}. "
                f"Try a lower --lr (now {self.config.lr:g})")
        return stop

    def _train_epoch(self) -> str | None:
        """Batches ``self.batch..`` of ``self.epoch``. Returns "stop" (signal), "max_steps" or None."""
        c, loader = self.config, self.train_loader
        loader.set_epoch(self.epoch)
        self.train_model.train()
        cpu_single = self.device.type == "cpu" and not self.dist.enabled
        self.progress.start_epoch(self.epoch, self.steps_per_epoch, self.batch)
        since, t0 = 0, time.perf_counter()
        images = self.resolved.batch_per_process * self.dist.world_size
        outcome = None
        compiling = self._announce_compilation() \
            if self.resolved.compile and not self._compiled and self.batch < self.steps_per_epoch else None
        try:
            for x, y in loader.iter_from(self.batch):
                if compiling is not None:
                    self._first_compiled_step(x, y, compiling)
                    compiling = None
                else:
                    self.train_step(x, y)
                self.batch += 1
                since += 1
                self.progress.count(images)
                last = self.batch == self.steps_per_epoch
                if last:  # a few of the epoch's images, to look inside the net if the epoch was at chance
                    self._probe_batch = x[:PROBE_IMAGES].detach().clone()
                # a log interval's end, or (one process) progress due by the clock: slow CPU steps
                log_now = self.batch % c.log_interval == 0 or last or (not self.dist.enabled and self.progress.due())
                ckpt_now = bool(c.checkpoint_interval) and self.step % c.checkpoint_interval == 0 and not last
                max_now = bool(c.max_steps) and self.step >= c.max_steps
                sync = log_now or ckpt_now or max_now
                if sync or cpu_single or (self.stop.signal is not None and not self.dist.enabled):
                    stop = self._check(collective=sync)
                    if log_now:
                        s = errors_from_sums(self.meter.values())
                        self.progress.update(self.batch, since, s["loss"], s["top1_err"], self.lr, last=last)
                        since = 0
                    # At the epoch's last batch the epoch ends normally (validation, checkpoint), and the
                    # run loop looks at the signal and max_steps after that.
                    if not last and (stop or max_now or ckpt_now):
                        dt = time.perf_counter() - t0
                        self.epoch_train_seconds += dt
                        self.epoch_seconds += dt
                        self.clock.add("training", dt)
                        t = time.perf_counter()
                        self.save()
                        dt = time.perf_counter() - t
                        self.epoch_seconds += dt
                        self.clock.add("checkpoints", dt)
                        t0 = time.perf_counter()
                        if stop:
                            outcome = "stop"
                            break
                        if max_now:
                            outcome = "max_steps"
                            break
        finally:
            self.progress.close()
        dt = time.perf_counter() - t0
        self.epoch_train_seconds += dt
        self.epoch_seconds += dt
        self.clock.add("training", dt)
        return outcome

    def evaluate(self, loader, *, ten_crop: bool = False, phase: str = "validation") -> dict:
        """Loss and top-1/top-5 error over ``loader`` (centre crops, or the 10 crops' mean softmax), with
        the evaluation loop that ``alexnet evaluate`` runs (:func:`alexnet.evaluation.evaluate_batches`).
        Its time counts as ``phase`` of the run's :class:`WallClock`."""
        from alexnet.evaluation.evaluate import evaluate_batches

        if self.resolved.compile and not self._eval_compiled:
            self._compile_for_evaluation()
        # Validation can take minutes (the 10 crops of a large set): a bar on a terminal, else a line on
        # stderr every 30 s, never a silent phase.
        bar = Progress(len(loader), "validation, 10 crops" if ten_crop else "validation", unit="batch",
                       enabled=self.progress.enabled)
        try:
            with self.clock.phase(phase):
                tally = evaluate_batches(self.eval_model, loader, num_classes=len(self.classes), ten_crop=ten_crop,
                                         autocast=self._autocast, channels_last=self.resolved.channels_last,
                                         on_batch=lambda n: bar.update(1), device=self.device,
                                         fixed_batch=self.resolved.batch_per_process if self.resolved.compile
                                         else None)
                return tally.reduce(self.dist.all_reduce_sum if self.dist.enabled else None).summary()
        finally:
            bar.close()

    @torch.no_grad()
    def _compile_for_evaluation(self) -> None:
        """Compile the evaluation model on one batch of zeros of the shape evaluation feeds it (a batch of
        ``batch_per_process`` crops: ``evaluate_batches(fixed_batch=)``), said and timed like the training
        step's compilation."""
        r = self.resolved
        self.progress.log("compiling the model for evaluation")
        t = time.perf_counter()
        x = torch.zeros(r.batch_per_process, 3, r.crop_size, r.crop_size, device=self.device)
        if r.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.eval_model.eval()
        with self._autocast():
            self.eval_model(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._eval_compiled = True
        dt = time.perf_counter() - t
        self.clock.add("compilation", dt)
        self.progress.log(f"compiled for evaluation in {dt:.0f} s")

    # ------------------------------------------------------------------------------------------ run
    def _prepare_run_dir(self) -> None:
        if not self.main or self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        stale = rundir.remove_temporaries(self.run_dir)
        if stale:
            self.progress.log(f"removed {len(stale)} temporary file(s) left by an interrupted write: "
                              + ", ".join(p.name for p in stale))
        save_config_file(self.config, self.run_dir / rundir.CONFIG_FILE)
        self._save_resolved()
        self.tb = rundir.TensorBoard(self.run_dir / "tb", purge_step=len(self.history) + 1)

    def _save_resolved(self) -> None:
        import yaml

        ran = {**self.resolved.to_dict(), "steps_per_epoch": self.steps_per_epoch, "warmup_steps": self.warmup_steps,
               "total_steps": self.total_steps, "jpeg_decoder": self.jpeg_decoder, "torch": str(torch.__version__)}
        if self.given_in_memory:  # not the config's data (an experiment's subset): a report must not use that
            ran["data_given_in_memory"] = {"train_images": len(self.train_loader.indices),
                                           "val_images": 0 if self.val_loader is None else len(self.val_loader.indices)}
        write_atomic(self.run_dir / rundir.RESOLVED_FILE, yaml.safe_dump(ran, sort_keys=False))

    def _end_epoch(self) -> dict:
        train = errors_from_sums(self.meter.reduced(self.dist.all_reduce_sum if self.dist.enabled else None))
        t0 = time.perf_counter()
        val = self.evaluate(self.val_loader) if self.val_loader is not None else None
        self.epoch_seconds += time.perf_counter() - t0
        row = {"epoch": self.epoch + 1, "train_loss": train["loss"], "train_top1_err": train["top1_err"],
               "train_top5_err": train["top5_err"],
               "val_top1_err": None if val is None else val["top1_err"],
               "val_top5_err": None if val is None else val["top5_err"],
               "lr": self.lr, "images_per_s": train["images"] / max(self.epoch_train_seconds, 1e-9),
               "seconds": self.epoch_seconds, "stalled": int(self._stalled(train))}
        # The paper's schedule watches the validation error; without validation data, the training error.
        self.schedule.end_epoch(row["val_top1_err"] if val is not None else row["train_top1_err"])
        near = self._near_chance(train, DEAD_CHECK_TOLERANCE) and "dead" not in self._stall_reported
        if row["stalled"] or near:
            alive = self._last_hidden_alive()
            kind = "dead" if alive is not None and alive < DEAD_UNITS else "plateau" if row["stalled"] else None
            if kind is not None and self._learned_before() is not None:
                kind = "collapsed"
            if kind is not None and kind not in self._stall_reported:
                self._stall_reported.add(kind)
                self.progress.log(self._stalled_message(train, alive, at_chance=bool(row["stalled"])))
        self.history.append(row)
        improved = val is not None and (self.best["val_top1_err"] is None
                                         or val["top1_err"] < self.best["val_top1_err"])
        if improved:
            self.best = {"val_top1_err": val["top1_err"], "epoch": self.epoch + 1}
        self.epoch, self.batch = self.epoch + 1, 0
        self.meter.reset()
        self.epoch_seconds = self.epoch_train_seconds = 0.0
        self._save_epoch(improved)
        if self.tb is not None:
            self.tb.log_epoch(row)
        return row

    def _save_epoch(self, improved: bool) -> None:
        """The epoch's files (checkpoint, ``best`` if it improved, ``metrics.csv``, ``curves.png`` when due)
        handed to the writer without waiting for the disk: when epochs are shorter than a checkpoint's
        write, a newer epoch's files replace the ones still waiting (:meth:`BackgroundWriter.offer`)."""
        with self.clock.phase("checkpoints"):
            self._offer_epoch_files(improved)
        self.dist.barrier()

    def _offer_epoch_files(self, improved: bool) -> None:
        state = self.state_dict()
        if self.main and self.run_dir is not None:
            # curves.png is drawn every CURVES_EVERY_S at most, and at the last epoch (see CURVES_EVERY_S)
            now = time.perf_counter()
            draw = self.epoch >= self.config.epochs or now - self._curves_drawn_at >= CURVES_EVERY_S
            if draw:
                self._curves_drawn_at, self._curves_epochs = now, len(self.history)
            job = _EpochFiles(self.run_dir, state, state if improved else None, [dict(r) for r in self.history],
                              self._curves_title, draw=draw, top5=self.top5)
            self.writes.offer(job, merge=_EpochFiles.merge)

    @property
    def _curves_title(self) -> str:
        """``arch on DATA``, with DATA (an absolute path) shortened to its last folders to fit the figure."""
        desc = self.data_desc
        if self.config.data and len(desc) > CURVES_TITLE_DATA_CHARS:
            parts = Path(self.config.data).parts
            desc = str(Path("…", *parts[-2:])) if len(parts) > 2 else desc
        return f"{self.config.arch} on {desc}"

    def _draw_late_curves(self) -> None:
        """A run that stops before its last epoch (a signal, ``max_steps``, a callback) draws the curves of
        the epochs it finished, if the last drawing was skipped."""
        if self.main and self.run_dir is not None and self._curves_epochs < len(self.history):
            self._curves_epochs = len(self.history)
            history, path, title = [dict(r) for r in self.history], self.run_dir / "curves.png", self._curves_title
            top5 = self.top5
            self.writes.submit(("curves.png", lambda: rundir.write_curves(path, history, title=title, top5=top5)))

    def _near_chance(self, train: dict, tolerance: float) -> bool:
        """An epoch after the first (and after any warm-up) whose training loss is within ``tolerance``
        (a share) of a constant guess's (a loss far above it is an overshoot, not a dead net)."""
        if self.epoch < 1 or self.step - self.steps_per_epoch < self.warmup_steps or math.isnan(train["loss"]):
            return False
        return abs(train["loss"] - self.train_chance["loss"]) <= tolerance * self.train_chance["loss"]

    def _stalled(self, train: dict) -> bool:
        """True when a whole epoch after the first (and after any warm-up) trained at chance level: the
        loss that of a constant guess (within 2%) and the error at chance (docs/RECIPE.md, "A run that is
        dead says so")."""
        return self._near_chance(train, STALLED_LOSS_TOLERANCE) and \
            train["top1_err"] >= self.train_chance["err"] - CHANCE_MARGIN

    @torch.no_grad()
    def _last_hidden_alive(self) -> float | None:
        """The share of the units feeding the last layer (fc7 for AlexNet) that are non-zero for at least
        one of a few of the last epoch's images, in eval mode: near 0 when the ReLUs have died (the output
        no longer depends on the image), well above it on a plateau the net may still leave. None if there
        is no batch or no final linear layer."""
        x = getattr(self, "_probe_batch", None)
        last = [m for m in self.module.modules() if isinstance(m, nn.Linear)]
        if x is None or not last:
            return None
        seen = {}
        handle = last[-1].register_forward_pre_hook(lambda m, args: seen.update(x=args[0].detach()))
        was_training = self.module.training
        self.module.eval()
        try:
            with self._autocast():
                self.module(x)
        finally:
            handle.remove()
            self.module.train(was_training)
        h = seen["x"].float().flatten(1)
        return float((h != 0).any(0).float().mean())

    def _learned_before(self) -> dict | None:
        """The earlier epoch with the lowest training error, if that error was :data:`LEARNED_MARGIN` or
        more below chance (the net had learned something); else None."""
        rows = [r for r in self.history if r["train_top1_err"] is not None and not math.isnan(r["train_top1_err"])]
        best = min(rows, key=lambda r: r["train_top1_err"], default=None)
        if best is None or best["train_top1_err"] > self.train_chance["err"] - LEARNED_MARGIN:
            return None
        return best

    def _stalled_message(self, train: dict, alive: float | None, at_chance: bool = True) -> str:
        c = self.config
        at = (f"in epoch {self.epoch + 1} the training loss was {train['loss']:.4f}, "
              f"{'that' if at_chance else 'near that'} of a constant guess "
              f"({self.train_chance['loss']:.4f}; ln {len(self.classes)} = {math.log(len(self.classes)):.4f}), "
              f"and the top-1 error {100 * train['top1_err']:.2f}% is {'at' if at_chance else 'near'} chance")
        units = "" if alive is None else f" ({alive:.1%} of the last hidden layer's units respond to an image)"
        learned = self._learned_before()
        if learned is not None:
            best = self.best
            kept = (f"; best.pt keeps epoch {best['epoch']} (validation top-1 error "
                    f"{100 * best['val_top1_err']:.2f}%)" if best.get("epoch") and self.run_dir is not None else "")
            return (f"warning: the network collapsed to chance: {at}, after a training error of "
                    f"{100 * learned['train_top1_err']:.2f}% in epoch {learned['epoch']}{units}. The learning rate "
                    f"(now {self.lr:.3g}) is too high for this net and data, and it rarely recovers{kept}. Start "
                    f"again with a lower --lr (now {c.lr:g}), e.g. {c.lr / 3:.2g} (docs/RECIPE.md)")
        if alive is not None and alive < DEAD_UNITS:
            return (f"warning: the network is dead and will not learn: {at}. Its ReLUs died{units}, most likely "
                    f"in the first steps (docs/RECIPE.md); start again with a lower --lr (now {c.lr:g}) or a "
                    f"longer --warmup-epochs (now {self.warmup_steps / self.steps_per_epoch:.3g} epochs)")
        return (f"note: the network has not learned anything yet: {at}. It is alive{units} and may still "
                "leave this plateau; if it stays there, try a lower --lr or --init kaiming (docs/RECIPE.md)")

    def _describe(self) -> None:
        c, p = self.config, self.progress
        n_train = len(self.train_loader.indices)
        if self.val_loader is None:
            val = "no validation"
        elif self.val_loader.indices is not None and self.val_dataset is self.dataset:
            val = f"{len(self.val_loader.indices)} held out ({c.val_split:g}, seed {c.seed})"
        else:
            val = f"{len(self.val_loader.indices)} validation images from {c.val or 'the given dataset'}"
        present = self.train_chance.get("present", len(self.classes))
        # e.g. Imagenette prepared with the 1000 ImageNet classes: a 1000-way net, 10 of them in the data
        shown = f", {present} of them in the training images" if present < len(self.classes) else ""
        p.log(f"training {c.arch} on {self.data_desc}: {n_train} training images, {val}, "
              f"{len(self.classes)} classes{shown}")
        budget = f"{count(c.epochs, 'epoch')} x {count(self.steps_per_epoch, 'step')}"
        if c.max_steps and c.max_steps < c.epochs * self.steps_per_epoch:
            budget = (f"{count(c.max_steps, 'step')} (--max-steps; {count(c.epochs, 'epoch')} would be "
                      f"{c.epochs * self.steps_per_epoch})")
        p.log(f"{budget} of {c.batch_size} ({self.resolved.crop_size}x{self.resolved.crop_size} crops), "
              f"{c.optimizer} SGD lr {c.lr:g} momentum {c.momentum:g} weight decay {c.weight_decay:g}, "
              f"{c.schedule} schedule"
              f"{f' after {self.warmup_steps} steps of linear warm-up' if self.warmup_steps else ''}"
              f"; {self.device}, {self.resolved.precision}"
              f"{', channels_last' if self.resolved.channels_last else ''}"
              f"{', compiled' if self.resolved.compile else ''}"
              f"{f' ({self.resolved.compile_mode})' if self.resolved.compile and self.resolved.compile_mode != 'default' else ''}"
              f"{f', grouped convolutions {self.resolved.grouped_conv}' if self.resolved.grouped_conv != 'cudnn' else ''}"
              f"{', fused optimizer' if self.config.fused_optimizer else ''}"
              f"{', the step as one CUDA graph' if self.resolved.cuda_graph else ''}"
              f"{f', {self.dist.world_size} processes' if self.dist.enabled else ''}"
              + (", " + count(torch.get_num_threads(), "thread") if self.device.type == "cpu" else ""))
        if self.warmup_steps > self.total_steps:
            peak = self.schedule.lr(max(self.total_steps - 1, 0))
            p.log(f"note: the run ends ({count(self.total_steps, 'step')}) inside its {self.warmup_steps}-step "
                  f"warm-up: the learning rate rises to {peak:.3g}, never to --lr {c.lr:g}; train longer, or "
                  "shorten the warm-up with --warmup-epochs")
        size, crop = self.dataset.size, self.resolved.crop_size
        if size >= 3 * crop:  # e.g. cifar_4layer's 32-px crops of 256-px images: 1.6% of each, also at predict
            p.log(f"note: {crop}x{crop} crops of {size}x{size} images see {crop * crop / size / size:.1%} of each "
                  f"image; for a net of {crop}-px input prepare the images at about that size (alexnet prepare "
                  "--size; docs/DATA.md)")
        if self.demo:
            p.log("demo: the built-in generated images (nothing downloaded), a short recipe for a CPU")
        diff = departures(c, demo=self.demo)
        p.log("departs from the paper's recipe: " + "; ".join(diff) if diff else "the paper's recipe")
        if self.run_dir is not None:
            p.log(f"run directory: {self.run_dir}")
        if self.step:
            p.log(f"resuming at epoch {self.epoch + 1}, batch {self.batch} (step {self.step})")

    def _say(self, message: str) -> None:
        """What the user must see even with progress off (``--quiet``): through the progress when it is
        on, else on stderr (rank 0)."""
        if self.progress.enabled:
            self.progress.log(message)
        elif self.main:
            _say_error(message)

    def _continue_hint(self) -> str:
        """How to continue an interrupted run: ``alexnet train --resume``, unless its images were handed to
        the trainer in memory (an experiment's subset), which only the program that gave them can do again
        (the CLI would resume on all of ``data``)."""
        if self.given_in_memory:
            return ("; its training images were given in memory: continue it from the program that started it "
                    "(resume(run_dir, dataset=...) with the same images)")
        return f"; continue with: {self._resume_command()}"

    def _resume_command(self) -> str:
        """The command that continues this run as it runs now (under torchrun: as many processes)."""
        if self.dist.enabled:
            return (f"torchrun --standalone --nproc_per_node {self.dist.world_size} -m alexnet train --resume "
                    f"{self.run_dir} (as many processes, on as many machines, as now)")
        return f"alexnet train --resume {self.run_dir}"

    def _already_complete(self) -> dict | None:
        """A resumed run whose budget is spent and whose end (final evaluation, weights, summary.json) was
        written for this very state: the summary's results, else None (then the end is done again, as
        when a run was stopped during its final evaluation). summary.json is read as untrusted input."""
        c = self.config
        if self.run_dir is None or self.dist.enabled or not self.step:
            return None
        if self.epoch < c.epochs and not (c.max_steps and self.step >= c.max_steps):
            return None
        if not (self.run_dir / rundir.WEIGHTS).is_file():
            return None
        try:
            summary = rundir.read_summary(self.run_dir / rundir.SUMMARY)
        except (OSError, ValueError):
            return None
        if summary.get("epochs") != self.epoch or summary.get("steps") != self.step:
            return None
        final = {"epochs": self.epoch, "steps": self.step}
        for k in ("val_top1_err", "val_top5_err", "ten_crop_top1_err", "ten_crop_top5_err"):
            v = summary.get(k)
            ok = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0)
            if not ok:
                return None
            final[k] = v
        return final

    def run(self) -> TrainResult:
        c = self.config
        done = self._already_complete()
        if done is not None:
            self._close_loaders()
            budget = count(c.max_steps, "step") if c.max_steps and self.step >= c.max_steps else count(c.epochs, "epoch")
            more = (f"--max-steps 0 (to the end of its {count(c.epochs, 'epoch')})" if self.epoch < c.epochs
                    else f"--epochs {c.epochs + max(1, c.epochs // 2)}")
            self.progress.log(f"{self.run_dir} is already complete ({budget}, its results in {rundir.SUMMARY}); "
                              f"nothing to do. To train longer: {self._resume_command()} {more}")
            self.module.eval()
            return TrainResult(config=c, run_dir=self.run_dir, history=list(self.history), final=done,
                               weights=self.run_dir / rundir.WEIGHTS, model=self.module)
        self._prepare_run_dir()
        self._describe()
        if getattr(self, "_rng_to_restore", None):
            self._set_rng(self._rng_to_restore)
        if self.handle_signals:
            self.stop.install()
        interrupted = None
        self.lr = self.schedule.lr(self.step)
        self.clock.add("setup", time.perf_counter() - self.clock.start)
        try:
            while self.epoch < c.epochs:
                if c.max_steps and self.step >= c.max_steps:
                    break  # resumed at its step budget already: no extra step
                outcome = self._train_epoch()
                if outcome == "stop":
                    interrupted = self.stop.signal
                    break
                if outcome == "max_steps":
                    break
                row = self._end_epoch()
                eta = None
                if self.epoch < c.epochs:
                    eta = row["seconds"] * (c.epochs - self.epoch)
                self.progress.end_epoch(row, eta)
                if self._check(collective=True):
                    interrupted = self.stop.signal
                    break
                if c.max_steps and self.step >= c.max_steps:
                    break
                if self.callback is not None and self.callback(row):
                    break
            result = TrainResult(config=c, run_dir=self.run_dir, history=list(self.history),
                                 interrupted=interrupted, model=self.module)
            if interrupted:
                with self.clock.phase("checkpoints"):
                    self._draw_late_curves()
                    self.writes.wait()  # the checkpoint is on disk before the run says so
                self._say(f"{interrupted}: stopped at epoch {self.epoch + 1}, batch {self.batch} "
                          f"(step {self.step}); checkpoint saved"
                          + (self._continue_hint() if self.run_dir is not None and self.resume_hint else ""))
                return result
            result.final = self._finish()
            with self.clock.phase("checkpoints"):
                self._draw_late_curves()  # after the final evaluation, which overlapped the last writes
                self.writes.wait()
            result.final["time"] = self.clock.summary()
            result.final["seconds"] = result.final["time"]["total_s"]
            if self.started_at_step:  # the time is this session's
                result.final["resumed_at_step"] = self.started_at_step
            self.progress.log(WallClock.describe(result.final["time"]))
            if self.main and self.run_dir is not None:
                result.weights = self.run_dir / rundir.WEIGHTS
                rundir.write_summary(self.run_dir / rundir.SUMMARY, {**result.final, "config": c.to_dict()})
            self.module.eval()
            return result
        finally:
            self.writes.close(report=_say_error)  # on an error's way out: wait, and say a failed write
            self.stop.restore()
            self.progress.close()
            if self.tb is not None:
                self.tb.close()
            self._close_loaders()

    def _close_loaders(self) -> None:
        for loader in (self.train_loader, self.val_loader):
            if loader is not None:
                loader.close()

    def _finish(self) -> dict:
        """Final evaluation (centre crop, then the paper's 10 crops) and the weights file."""
        final: dict = {"epochs": self.epoch, "steps": self.step, "val_top1_err": None, "val_top5_err": None,
                       "ten_crop_top1_err": None, "ten_crop_top5_err": None}
        if self.val_loader is not None:
            # The last epoch's validation is the final centre-crop result, unless the run stopped mid-epoch.
            last = self.history[-1] if self.history and self.batch == 0 else None
            centre = {"top1_err": last["val_top1_err"], "top5_err": last["val_top5_err"]} if last \
                else self.evaluate(self.val_loader, phase="final_evaluation")
            final["val_top1_err"], final["val_top5_err"] = centre["top1_err"], centre["top5_err"]
            self.progress.log(f"final validation, centre crop: top-1 error {100 * centre['top1_err']:.2f}%"
                              + (f", top-5 error {100 * centre['top5_err']:.2f}%" if self.top5 else ""))
            best = self.best
            if best.get("epoch") is not None:
                final["best_epoch"], final["best_val_top1_err"] = best["epoch"], best["val_top1_err"]
                # the weights file is the final model's (the paper's); say where a much better epoch is kept
                if best["val_top1_err"] <= centre["top1_err"] - BEST_NOTE_MARGIN and self.run_dir is not None:
                    self.progress.log(
                        f"note: epoch {best['epoch']} was better (validation top-1 error "
                        f"{100 * best['val_top1_err']:.2f}%); the weights file holds the last epoch's weights, "
                        f"{self.run_dir / rundir.BEST} epoch {best['epoch']}'s: give it to --weights to use them")
            if self.config.ten_crop:
                ten = self.loader(self.val_dataset, train=False, indices=self.val_loader.indices, ten_crop=True)
                try:
                    t = self.evaluate(ten, ten_crop=True, phase="final_evaluation")
                finally:
                    ten.close()
                final["ten_crop_top1_err"], final["ten_crop_top5_err"] = t["top1_err"], t["top5_err"]
                self.progress.log(f"final validation, 10 crops:   top-1 error {100 * t['top1_err']:.2f}%"
                                  + (f", top-5 error {100 * t['top5_err']:.2f}%" if self.top5 else ""))
        if self.main and self.run_dir is not None:
            with self.clock.phase("weights"):
                self._save_weights(final)
        self.dist.barrier()
        return final

    def _preprocess_metadata(self) -> dict:
        """How ``alexnet predict`` must preprocess an image for this run's model (the weights' metadata)."""
        ds = self.dataset
        return {"resize": int(ds.size), "crop_size": self.resolved.crop_size,
                "mean_rgb": [float(v) for v in ds.mean_rgb],
                "std_rgb": None if self.resolved.pixel_std is None else [float(v) for v in self.resolved.pixel_std],
                "mean": self.config.mean, "warp": bool(getattr(ds, "meta", {}).get("warp", False))}

    def _save_weights(self, final: dict) -> None:
        """The trained weights as ``.safetensors``, with what ``alexnet predict`` needs to preprocess."""
        from alexnet.weights import save_weights

        save_weights(self.run_dir / rundir.WEIGHTS, self.module, arch=self.config.arch,
                     model_options=dict(self.config.model_options), classes=self.classes,
                     preprocess=self._preprocess_metadata(),
                     mean_image=self.dataset.mean_image if self.config.mean == "image" else None,
                     extra={"trained_by": "alexnet train", "epochs": self.epoch, "steps": self.step,
                            **{k: v for k, v in final.items() if k.endswith("_err") and v is not None}})
        self.progress.log(f"weights: {self.run_dir / rundir.WEIGHTS}")


@dataclass
class _EpochFiles:
    """An epoch's files for the background writer. ``best``: the state ``best.pt`` is to hold when it
    changed: this epoch's (a hard link to ``last.pt``), or that of an earlier epoch whose files were
    replaced before they were written (then written in full); None when it did not change."""

    run_dir: Path
    state: dict
    best: dict | None
    history: list
    title: str
    draw: bool = True
    """Draw ``curves.png`` too (see ``CURVES_EVERY_S``)."""
    top5: bool = True
    """Top-5 errors in the curves (not with 5 classes or fewer)."""

    def steps(self) -> list:
        d = self.run_dir
        steps = [(rundir.LAST, lambda: ckpt.save_checkpoint(self.state, d / rundir.LAST))]
        if self.best is self.state:
            steps.append((rundir.BEST, lambda: ckpt.link_checkpoint(d / rundir.LAST, d / rundir.BEST)))
        elif self.best is not None:
            steps.append((rundir.BEST, lambda: ckpt.save_checkpoint(self.best, d / rundir.BEST)))
        steps.append(("metrics.csv", lambda: rundir.write_metrics_csv(d / "metrics.csv", self.history)))
        if self.draw:
            steps.append(("curves.png", lambda: rundir.write_curves(d / "curves.png", self.history, title=self.title,
                                                                    top5=self.top5)))
        return steps

    @staticmethod
    def merge(waiting: _EpochFiles, newer: _EpochFiles) -> _EpochFiles:
        """``newer`` in place of ``waiting``, keeping a best state that only ``waiting`` had, and drawing the
        curves (of ``newer``'s longer history) if ``waiting`` was to."""
        if newer.best is None and waiting.best is not None:
            newer.best = waiting.best
        newer.draw = newer.draw or waiting.draw
        return newer


def _say_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- API
def _default_name(config: TrainConfig) -> str:
    if config.name:
        return config.name
    if config.data is None:
        return "demo"
    return f"{config.arch}-{Path(config.data).resolve().name}"


def train(config: TrainConfig | None = None, *, dataset=None, val_dataset=None, progress: bool | None = True,
          callback: Callable[[dict], bool | None] | None = None, handle_signals: bool = True,
          resume_hint: bool = True) -> TrainResult:
    """Train a model as ``config`` says and write its run directory.

    ``dataset`` / ``val_dataset``: datasets to use instead of ``config.data`` / ``config.val`` (anything
    with the interface of :class:`alexnet.data.PreparedDataset`, e.g. an :class:`~alexnet.data.ArrayDataset`);
    without either, the built-in demo images. ``callback(row)`` is called after every epoch with that
    epoch's metrics (train and val errors, loss, lr); returning True ends the run there (e.g. once a target
    training error is reached). ``progress=False`` prints nothing. ``resume_hint=False``: a run stopped by a
    signal does not say how to continue it (a caller that says it itself, e.g. an experiment).
    """
    config = config or TrainConfig()
    if config.data is not None:
        config = config.replace(data=str(Path(config.data).resolve()))
    if config.val is not None:
        config = config.replace(val=str(Path(config.val).resolve()))
    rank0 = runtime.is_main()
    if config.out is not None:
        out = Path(config.out)
    else:
        # Every rank must agree on the directory: only the default name's "-2" suffix could differ, and
        # only rank 0 looks at the disk; under torchrun give --out to be safe.
        out = rundir.default_run_dir(_default_name(config)) if rank0 else Path("runs") / _default_name(config)
    config = config.replace(out=str(out))
    return _run(Trainer(config, dataset=dataset, val_dataset=val_dataset, run_dir=out, progress=progress,
                        callback=callback, handle_signals=handle_signals, fresh=True, resume_hint=resume_hint))


def _run(trainer: Trainer) -> TrainResult:
    """The run, then the process group closed (under torchrun), whatever happened."""
    try:
        return trainer.run()
    finally:
        trainer.dist.close()


RESUME_OVERRIDES = ("epochs", "max_steps", "device", "workers", "compile", "log_interval",
                    "checkpoint_interval", "ten_crop", "fused_optimizer", "augment_on", "cuda_graph")


def resume(run_dir: str | Path, *, dataset=None, val_dataset=None, progress: bool | None = True,
           callback: Callable[[dict], bool | None] | None = None, handle_signals: bool = True,
           resume_hint: bool = True, **overrides) -> TrainResult:
    """Continue the run in ``run_dir`` from its ``last`` checkpoint, with the same config.

    A few settings that do not change what is computed may be overridden (``RESUME_OVERRIDES``, e.g.
    ``epochs`` to train longer, ``device``, ``workers``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run directory" if run_dir.exists()
                        else f"run directory not found: {run_dir}")
    path = run_dir / rundir.LAST
    if not path.exists():
        if (run_dir / "meta.json").is_file():
            raise UserError(f"{run_dir} is a prepared dataset, not a run directory: train on it with "
                            f"--data {run_dir}")
        if not (run_dir / rundir.CONFIG_FILE).is_file():
            raise UserError(f"{run_dir} is not a run directory (no {rundir.CONFIG_FILE}, no {rundir.LAST}): "
                            "--resume takes the folder a run of alexnet train wrote")
        raise UserError(f"{run_dir} has no checkpoint ({rundir.LAST}) to resume from: the run stopped before "
                        "its first one; start it again with the same command (its folder is reused)")
    state = ckpt.load_checkpoint(path)
    ckpt.check_resumable(state, path)
    bad = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if bad:
        raise UserError(f"cannot change {', '.join(bad)} when resuming (only {', '.join(RESUME_OVERRIDES)})")
    config = TrainConfig.from_dict({**state["config"], "out": str(run_dir), **overrides})
    return _run(Trainer(config, dataset=dataset, val_dataset=val_dataset, run_dir=run_dir, state=state,
                        progress=progress, callback=callback, handle_signals=handle_signals,
                        resume_hint=resume_hint))
