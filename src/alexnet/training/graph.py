"""The whole training step as one CUDA graph (``TrainConfig.cuda_graph``, ``--cuda-graph``).

``torch.compile(mode="reduce-overhead")`` replays the compiled forward and backward from CUDA graphs, but
the optimizer's update and the meter's sums are still launched kernel by kernel from Python. Here the
whole step is captured once (forward, loss, backward, the update, the meter's sums and its first
non-finite step) and every later step is two copies into the graph's input buffers, a fill of each
param group's learning rate and one ``replay()``: a few launches per step, whatever the net.

What makes a step capturable (PyTorch's "whole network capture"; docs/TRAINING.md, "CUDA graphs"):

- fixed shapes (the training loader drops a last partial batch) and no host synchronisation in the step;
- every number that changes between steps on the device: the learning rate as a 0-dim tensor per param
  group (the optimizer sees it in ``group["lr"]`` only while the step is traced or captured; the checkpoint
  keeps floats), the step index for the meter as a device counter the step itself increments;
- the gradients allocated by the captured backward (``zero_grad(set_to_none=True)`` once before the
  capture, never between replays): replays write them in place;
- a few steps run uncaptured on a side stream first (``WARMUP_STEPS``): cuDNN's autotuner, the lazily
  made optimizer state and ``torch.compile``'s first call happen there, not in the capture;
- autocast without its weight-cast cache (a cached cast would not be redone in a replay).

Dropout's random masks stay random: the CUDA generator advances its offset at each replay.

On a CPU (or MPS) there is nothing to capture: the same step runs uncaptured every time, which is what
the CPU tests compare with the trainer's ordinary step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.optim import Optimizer

from alexnet.training.metrics import Meter

WARMUP_STEPS = 3
"""Steps run uncaptured (on a side stream) before the capture; PyTorch's examples use 3 (11 under DDP)."""


class GraphedStep:
    """``step(x, y, lrs)``: one training step on a batch with the param groups' learning rates ``lrs``.

    ``forward_loss(x, y) -> (logits, loss)`` runs the model (under autocast without its cache, when
    mixed precision). ``capture``: on CUDA, capture the step after :data:`WARMUP_STEPS` uncaptured steps;
    otherwise run it uncaptured every time. ``step``: the index of the next step (the meter's count of
    the first non-finite one). ``capture_seconds`` says how long the capture took, once it has happened.
    """

    def __init__(self, forward_loss: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                 optimizer: Optimizer, meter: Meter, *, device: torch.device, step: int, capture: bool,
                 warmup: int = WARMUP_STEPS) -> None:
        if capture and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.forward_loss, self.optimizer, self.meter = forward_loss, optimizer, meter
        self.device, self.capture, self.warmup = device, capture, warmup
        dtype = next(p for g in optimizer.param_groups for p in g["params"]).dtype
        self.lrs = [torch.zeros((), dtype=dtype, device=device) for _ in optimizer.param_groups]
        self.step_index = torch.full((), float(step), dtype=meter.sums.dtype, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.uncaptured = 0  # steps run so far without the graph
        self.capture_seconds: float | None = None

    # ------------------------------------------------------------------------------------------ the step
    def _body(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The step as it is captured: no host sync, every changing number read from a device tensor."""
        groups = self.optimizer.param_groups
        floats = [g["lr"] for g in groups]
        for g, lr in zip(groups, self.lrs, strict=True):
            g["lr"] = lr  # the optimizer reads the tensor (PaperSGD and torch's fused SGD take one)
        try:
            logits, loss = self.forward_loss(x, y)
            loss.backward()
            self.optimizer.step()
        finally:
            for g, lr in zip(groups, floats, strict=True):
                g["lr"] = lr  # floats again for the schedule and the checkpoint
        self.meter.accumulate(loss, logits, y, step=self.step_index)
        self.step_index += 1

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lrs: list[float]) -> None:
        for t, lr in zip(self.lrs, lrs, strict=True):
            t.fill_(lr)  # a kernel with the value as its argument: no copy from the host, no sync
        if self.graph is not None:
            self.inputs[0].copy_(x)
            self.inputs[1].copy_(y)
            self.graph.replay()
        elif not self.capture:
            self.optimizer.zero_grad(set_to_none=True)
            self._body(x, y)
        elif self.uncaptured < self.warmup:
            self._on_side_stream(x, y)
        else:
            self._capture(x, y)
        self.meter.count(y.shape[0])

    def _on_side_stream(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """An uncaptured step on a side stream (what the capture will see: the side stream's allocations)."""
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            self.optimizer.zero_grad(set_to_none=True)
            self._body(x, y)
        main.wait_stream(side)
        self.uncaptured += 1

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Capture the step on copies of this batch, then replay it once: this batch's step."""
        t = time.perf_counter()
        self.inputs = (x.clone(), y.clone())
        torch.cuda.synchronize(self.device)
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates the gradients
        graph = torch.cuda.CUDAGraph()
        # thread_local: the loader's threads may go on with their own CUDA work (nvJPEG decodes, copies on
        # their streams) while this thread captures; "global" would make those calls fail
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self._body(*self.inputs)
        self.graph = graph
        graph.replay()
        torch.cuda.synchronize(self.device)
        self.capture_seconds = time.perf_counter() - t
