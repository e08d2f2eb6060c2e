"""Learning-rate schedules: the paper's (divide by 10 on a plateau), Caffe's step, cosine, constant.

A schedule answers two questions: the learning rate for the next step (``lr(step)``, called before every
optimizer step) and, at the end of each epoch, what to do with the validation error (``end_epoch``).
Its state is a dict of plain numbers, so that it goes into a checkpoint as is.
"""

from __future__ import annotations

import math

from alexnet.errors import BadOptionError

SCHEDULES = ("plateau", "step", "cosine", "constant")
CHANCE_MARGIN = 0.02
"""How far (absolute) below chance-level error a run must get before ``plateau`` may cut its lr."""


class Schedule:
    """Constant learning rate; the base of the others."""

    name = "constant"

    def __init__(self, base_lr: float, warmup_steps: int = 0) -> None:
        self.base_lr = float(base_lr)
        self.warmup_steps = int(warmup_steps)

    def _warmup(self, step: int, lr: float) -> float:
        # Linear warm-up from base_lr / warmup_steps (not in the paper; the trainer's default sets one).
        if step < self.warmup_steps:
            return lr * (step + 1) / self.warmup_steps
        return lr

    def lr(self, step: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based, counted over the whole run)."""
        return self._warmup(step, self.base_lr)

    def end_epoch(self, metric: float | None) -> bool:
        """Called after each epoch with the validation top-1 error; True if the lr was reduced."""
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class PlateauSchedule(Schedule):
    """The paper's: "divide the learning rate by 10 when the validation error rate stopped improving with
    the current learning rate", at most ``max_reductions`` (3) times.

    "Stopped improving" is read as: the best error seen so far has not been beaten for ``patience`` epochs
    in a row (the authors decided by hand; the patience is our choice).

    A network still at chance level has not "stopped improving": it has not started. While the best error
    is not below ``chance_err - CHANCE_MARGIN`` (``chance_err``, given by the trainer: the error of always
answering the most frequent class, 1 - 1/classes when they are balanced),
    epochs without improvement are not counted, so the lr is never cut before the run has learned
    something (docs/RECIPE.md: cutting a stalled run's lr three times in 17 small epochs only made sure it
    never recovered). A run that stays at chance is reported by the trainer instead.
    """

    name = "plateau"

    def __init__(self, base_lr: float, patience: int = 5, factor: float = 0.1, max_reductions: int = 3,
                 warmup_steps: int = 0, chance_err: float | None = None) -> None:
        super().__init__(base_lr, warmup_steps)
        self.patience, self.factor, self.max_reductions = int(patience), float(factor), int(max_reductions)
        self.chance_err = chance_err
        self.reductions = 0
        self.best: float | None = None
        self.bad_epochs = 0

    def lr(self, step: int) -> float:
        return self._warmup(step, self.base_lr * self.factor ** self.reductions)

    def end_epoch(self, metric: float | None) -> bool:
        if metric is None or math.isnan(metric):
            return False
        if self.best is None or metric < self.best:
            self.best, self.bad_epochs = float(metric), 0
            return False
        if not self.left_chance():
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.reductions < self.max_reductions:
            self.reductions += 1
            self.bad_epochs = 0
            # The best error so far stays the reference: the new rate has to beat it too.
            return True
        return False

    def left_chance(self) -> bool:
        """True once the best error is clearly below chance (always, when chance is not known)."""
        return self.chance_err is None or (self.best is not None and self.best < self.chance_err - CHANCE_MARGIN)

    def state_dict(self) -> dict:
        return {"reductions": self.reductions, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.reductions = int(state["reductions"])
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


class StepSchedule(Schedule):
    """Caffe's ``lr_policy: "step"``: lr * gamma^floor(step / step_size) (bvlc_alexnet: 0.1 every 100k)."""

    name = "step"

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1, warmup_steps: int = 0) -> None:
        super().__init__(base_lr, warmup_steps)
        if step_size < 1:
            raise BadOptionError(f"step size must be >= 1 iteration, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def lr(self, step: int) -> float:
        return self._warmup(step, self.base_lr * self.gamma ** (step // self.step_size))


class CosineSchedule(Schedule):
    """Half a cosine from base_lr down to ``min_lr`` over ``total_steps`` (not in the paper)."""

    name = "cosine"

    def __init__(self, base_lr: float, total_steps: int, min_lr: float = 0.0, warmup_steps: int = 0) -> None:
        super().__init__(base_lr, warmup_steps)
        self.total_steps, self.min_lr = max(1, int(total_steps)), float(min_lr)

    def lr(self, step: int) -> float:
        t = min(max(step - self.warmup_steps, 0) / max(1, self.total_steps - self.warmup_steps), 1.0)
        lr = self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
        return self._warmup(step, lr)


def build_schedule(name: str, *, base_lr: float, total_steps: int, patience: int = 5, factor: float = 0.1,
                   max_reductions: int = 3, step_size: int = 100_000, min_lr: float = 0.0,
                   warmup_steps: int = 0, chance_err: float | None = None) -> Schedule:
    if name == "plateau":
        return PlateauSchedule(base_lr, patience, factor, max_reductions, warmup_steps, chance_err)
    if name == "step":
        return StepSchedule(base_lr, step_size, factor, warmup_steps)
    if name == "cosine":
        return CosineSchedule(base_lr, total_steps, min_lr, warmup_steps)
    if name == "constant":
        return Schedule(base_lr, warmup_steps)
    raise BadOptionError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
