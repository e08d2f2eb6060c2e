"""Training: the paper's recipe (PaperSGD, schedules), checkpoints with exact resume, run directories, DDP."""

from alexnet.training.config import DEMO_DEPARTURES, DEMO_RECIPE, TrainConfig, load_config_file
from alexnet.training.optim import PaperSGD, build_optimizer
from alexnet.training.schedule import (
    CosineSchedule,
    PlateauSchedule,
    Schedule,
    StepSchedule,
    build_schedule,
)

__all__ = ["DEMO_DEPARTURES", "DEMO_RECIPE", "CosineSchedule", "PaperSGD", "PlateauSchedule", "Schedule",
           "StepSchedule", "TrainConfig", "build_optimizer", "build_schedule", "load_config_file"]
