"""The paper's SGD update, and the choice between it and torch's SGD.

Paper, section 5 (docs/PAPER.md, "Training"), with eps the learning rate::

    v <- 0.9 * v - 0.0005 * eps * w - eps * dL/dw
    w <- w + v

The velocity ``v`` is kept in *weight units*: each step's learning rate is folded into it when the step
is taken. ``torch.optim.SGD(momentum=m, weight_decay=wd)`` instead keeps the buffer in *gradient units*
and multiplies by the learning rate at the end::

    b <- m * b + (g + wd * w)
    w <- w - lr * b

While the learning rate is constant the two are the same update (v = -lr * b). They differ when it
changes: after lr is divided by 10, torch's buffer (still full of gradients taken at the old rate) is
applied at the new rate at once, so the step shrinks tenfold immediately; the paper's velocity still
carries the steps already taken at the old rate and decays by 0.9 per step, so the change takes effect
over about 1 / (1 - 0.9) = 10 steps. tests/test_training_optim.py checks both statements.

``fused=True`` (``TrainConfig.fused_optimizer``): the update as one pass over each weight tensor instead
of four multi-tensor passes (about 2.2x less memory traffic: read v, w, g and write v, w once), for
``paper`` a ``torch.compile``'d loop (the learning rate a 0-dim tensor, so that a new rate does not
compile again), for ``sgd``/``nesterov`` torch's own ``fused=True``. The same update up to rounding.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim import Optimizer

from alexnet.errors import BadOptionError

OPTIMIZERS = ("paper", "sgd", "nesterov")


class PaperSGD(Optimizer):
    """SGD with momentum and weight decay exactly as written in the paper (see the module docstring).

    ``lr`` may be changed between steps through ``param_groups[i]["lr"]``, as with any torch optimizer,
    to a float or a 0-dim tensor on the weights' device (read without a host sync: CUDA graphs); the state (``state[p]["velocity"]``) holds the paper's ``v``.
    """

    def __init__(self, params: Iterable, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, *, fused: bool = False) -> None:
        if lr < 0:
            raise BadOptionError(f"learning rate must be >= 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise BadOptionError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise BadOptionError(f"weight decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.fused = bool(fused)
        self._fused_update = torch.compile(paper_update, fullgraph=True, dynamic=False) if fused else None
        self._lr_tensors: dict[int, torch.Tensor] = {}  # param group -> its lr as a 0-dim tensor (fused)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for k, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            grads = [p.grad for p in params]
            velocities = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                velocities.append(state["velocity"])
            if isinstance(lr, torch.Tensor):  # a 0-dim tensor (a CUDA graph's step: alexnet.training.graph)
                (self._fused_update or paper_update)(params, grads, velocities, lr, m, wd)
                continue
            if self.fused:
                lr_t = self._lr_tensors.get(k)
                if lr_t is None or lr_t.device != params[0].device or lr_t.dtype != params[0].dtype:
                    lr_t = self._lr_tensors[k] = torch.zeros((), device=params[0].device, dtype=params[0].dtype)
                lr_t.fill_(lr)  # no host sync on CUDA
                self._fused_update(params, grads, velocities, lr_t, m, wd)
                continue
            # v = m * v - wd * lr * w - lr * grad ; w = w + v   (the paper's formula term by term, each a
            # multi-tensor pass in place: no temporary the size of the model, whose allocation and page
            # faults alone cost more than the arithmetic on a CPU)
            torch._foreach_mul_(velocities, m)
            if wd != 0:
                torch._foreach_add_(velocities, params, alpha=-wd * lr)
            torch._foreach_add_(velocities, grads, alpha=-lr)
            torch._foreach_add_(params, velocities)
        return loss


def paper_update(params: list[torch.Tensor], grads: list[torch.Tensor], velocities: list[torch.Tensor],
                 lr: torch.Tensor, momentum: float, weight_decay: float) -> None:
    """The paper's update, ``v = m v - lr (wd w + g); w = w + v``, written per tensor so that
    ``torch.compile`` makes it one read and one write of each tensor (:class:`PaperSGD` with ``fused``)."""
    # (no zip(strict=True), which older torch.compile versions may not trace; the lists come from one list)
    for p, g, v in zip(params, grads, velocities):  # noqa: B905
        v.mul_(momentum).sub_(lr * (g + weight_decay * p))
        p.add_(v)


def parameter_groups(model: nn.Module, weight_decay: float, bias_decay: bool = True,
                     bias_lr_factor: float = 1.0) -> list[dict]:
    """One group, or two when biases get no weight decay or their own learning rate.

    The paper's formula decays every weight ``w`` with one learning rate for all; cuda-convnet's layer files
    and Caffe's bvlc_alexnet set no decay on biases and give them twice the weights' learning rate (epsB =
    2 epsW, ``lr_mult: 2``); torchvision's recipe treats biases like weights. Default: the formula as
    written (what makes the paper's update equal torch's SGD). A group's ``lr_scale`` multiplies the lr
    the schedule gives (the trainer applies it).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if bias_decay and bias_lr_factor == 1.0:
        return [{"params": params, "weight_decay": weight_decay, "lr_scale": 1.0}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": no_decay, "weight_decay": weight_decay if bias_decay else 0.0,
             "lr_scale": float(bias_lr_factor)}]


def build_optimizer(name: str, model: nn.Module, *, lr: float, momentum: float, weight_decay: float,
                    bias_decay: bool = True, bias_lr_factor: float = 1.0, fused: bool = False) -> Optimizer:
    """``paper`` (PaperSGD), ``sgd`` (torch.optim.SGD) or ``nesterov`` (torch's SGD, Nesterov momentum);
    ``fused``: one pass over each weight tensor per step (see the module docstring)."""
    groups = parameter_groups(model, weight_decay, bias_decay, bias_lr_factor)
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    if name == "paper":
        return PaperSGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)
    if name in ("sgd", "nesterov"):
        if name == "nesterov" and momentum <= 0:
            raise BadOptionError("nesterov needs momentum > 0")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=name == "nesterov", **({"fused": True} if fused else {}))
    raise BadOptionError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
