"""Training: the paper's recipe, exact resume, run directories, many processes.

    from alexnet.training import TrainConfig, train, resume
    result = train(TrainConfig(data="data/imagenette"))      # the paper's recipe with a warm-up (default)
    result = train(TrainConfig.paper(data="data/imagenette"))  # the paper's recipe (docs/RECIPE.md)
    result = train(TrainConfig.demo())                         # the built-in demo
    result = train(TrainConfig(arch="cifar_4layer", crop_size=32, lighting=0, epochs=10),
                   dataset=my_array_dataset, callback=lambda row: row["train_top1_err"] < 0.25)
    result.history     # one dict per epoch: train_loss, train_top1_err, val_top1_err, lr, ...

Modules: ``config`` (TrainConfig), ``optim`` (PaperSGD), ``schedule``, ``trainer`` (the loop, train,
resume), ``checkpoint`` (atomic save, weights_only load), ``writer`` (the run directory's files written
on a background thread), ``metrics`` (device-side sums), ``rundir`` (metrics.csv, curves.png,
TensorBoard), ``resolve`` (what a config becomes on this machine), ``progress`` (tqdm or log lines),
``distributed`` (torchrun).
"""

from alexnet.training.checkpoint import load_checkpoint, save_checkpoint
from alexnet.training.config import (
    DEMO_DEPARTURES,
    DEMO_RECIPE,
    PAPER_RECIPE,
    TrainConfig,
    departures,
    load_config_file,
)
from alexnet.training.optim import PaperSGD, build_optimizer
from alexnet.training.schedule import (
    CosineSchedule,
    PlateauSchedule,
    Schedule,
    StepSchedule,
    build_schedule,
)
from alexnet.training.trainer import NonFiniteLossError, Trainer, TrainResult, resume, train

__all__ = ["DEMO_DEPARTURES", "DEMO_RECIPE", "PAPER_RECIPE", "CosineSchedule", "NonFiniteLossError", "PaperSGD",
           "PlateauSchedule", "Schedule", "StepSchedule", "TrainConfig", "TrainResult", "Trainer",
           "build_optimizer", "build_schedule", "departures", "load_checkpoint", "load_config_file", "resume",
           "save_checkpoint", "train"]
