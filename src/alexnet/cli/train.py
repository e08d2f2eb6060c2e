"""``alexnet train``: the paper's recipe on a prepared dataset, or the built-in demo without ``--data``.

Values come from, lowest first: the paper's recipe (or the demo's, without data), ``--config FILE``
(YAML or TOML, keys as in :class:`alexnet.training.TrainConfig`), then the flags given.
"""

from __future__ import annotations

import argparse
import os
import signal

from alexnet.cli.common import add_model_options_arg, parse_options
from alexnet.errors import UserError

# (flag, config field, type, help). Flags default to None: "not given", so that --config and the
# recipe's defaults show through.
_FLAGS: list[tuple[str, str, object, str]] = [
    ("--arch", "arch", str, "registered model (default: alexnet; the demo: alexnet_owt)"),
    ("--init", "init", str, "model (the model's own initialisation, default) or kaiming (the demo's)"),
    ("--data", "data", str, "prepared dataset directory (alexnet prepare); without it: the built-in demo"),
    ("--val", "val", str, "prepared validation dataset (default: hold out --val-split of the training data)"),
    ("--val-split", "val_split", float, "fraction of the training data held out for validation (default 0.1; "
                                        "0 = no validation)"),
    ("--crop-size", "crop_size", int, "crop size (default: the model's input size)"),
    ("--mean", "mean", str, "subtract the mean 'image' (paper) or per-'channel' mean"),
    ("--lighting", "lighting", float, "std of the PCA lighting noise (paper 0.1; 0 = off)"),
    ("--epochs", "epochs", int, "epochs (paper: 90)"),
    ("--batch-size", "batch_size", int, "global batch size (paper: 128)"),
    ("--optimizer", "optimizer", str, "paper (v = m v - wd lr w - lr g; w += v), sgd or nesterov"),
    ("--lr", "lr", float, "learning rate (paper: 0.01)"),
    ("--momentum", "momentum", float, "momentum (paper: 0.9)"),
    ("--weight-decay", "weight_decay", float, "weight decay (paper: 5e-4)"),
    ("--bias-lr-factor", "bias_lr_factor", float, "biases' lr as a multiple of the weights' (paper: 1; "
                                                  "cuda-convnet and Caffe: 2)"),
    ("--schedule", "schedule", str, "plateau (paper: lr/10 when val error stops improving), step, cosine, constant"),
    ("--patience", "patience", int, "epochs without improvement before plateau divides the lr (default 5)"),
    ("--lr-factor", "lr_factor", float, "what plateau and step multiply the lr by (default 0.1)"),
    ("--max-reductions", "max_reductions", int, "lr reductions of plateau at most (paper: 3)"),
    ("--step-size", "step_size", int, "iterations between reductions of the step schedule (Caffe: 100000)"),
    ("--min-lr", "min_lr", float, "final lr of the cosine schedule"),
    ("--warmup-epochs", "warmup_epochs", float, "linear lr warm-up over this many epochs (default: 5 epochs or "
                                                "150 steps, whichever is longer; 0 = none, the paper's)"),
    ("--seed", "seed", int, "seed of initialisation, data order, augmentation and the validation split"),
    ("--workers", "workers", int, "loader threads (default: the CPUs this process may use)"),
    ("--device", "device", str, "auto, cpu, cuda or cuda:N"),
    ("--precision", "precision", str, "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16"),
    ("--out", "out", str, "run directory (default: runs/<name>)"),
    ("--name", "name", str, "run name for the default run directory"),
    ("--log-interval", "log_interval", int, "steps between progress updates (default 50)"),
    ("--checkpoint-interval", "checkpoint_interval", int, "also checkpoint every N steps (default: each epoch)"),
    ("--max-steps", "max_steps", int, "stop after N steps in all"),
    ("--demo-images", "demo_images", int, "number of generated demo images (without --data)"),
    ("--demo-size", "demo_size", int, "stored size of the generated demo images (without --data)"),
    ("--demo-classes", "demo_classes", int, "number of generated demo classes, 2..10 (without --data)"),
]


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model (the paper's recipe; a built-in demo without --data)",
        description="Train a registered model and write a run directory (config, metrics.csv, curves.png, "
                    "checkpoints, weights). Defaults are the paper's recipe with an lr warm-up "
                    "(--warmup-epochs 0: the paper's exactly); without --data, a short CPU demo on generated "
                    "images (measured times: docs/TIMINGS.md). Under torchrun, trains with "
                    "DistributedDataParallel.")
    p.add_argument("--config", metavar="FILE", help="YAML or TOML file of training options (flags override it)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint, same config")
    for flag, dest, typ, help_ in _FLAGS:
        p.add_argument(flag, dest=dest, type=typ, default=None, help=help_)
    add_model_options_arg(p)
    p.add_argument("--compile", dest="compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for CUDA, off for CPU)")
    p.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (default: on for CUDA; on CPU for nets without grouped convs)")
    p.add_argument("--ten-crop", dest="ten_crop", action=argparse.BooleanOptionalAction, default=None,
                   help="evaluate with the paper's 10 crops at the end (default: on)")
    p.add_argument("--bias-decay", dest="bias_decay", action=argparse.BooleanOptionalAction, default=None,
                   help="weight decay on biases too (default: on, the formula as written)")
    p.add_argument("--quiet", action="store_true", help="no progress output (the final result line is still printed)")
    p.set_defaults(func=run)


_FIELDS = [dest for _, dest, _, _ in _FLAGS] + ["compile", "channels_last", "ten_crop", "bias_decay"]


def given_options(args) -> dict:
    """The training options given as flags (model options included)."""
    values = {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}
    if args.model_options:
        values["model_options"] = parse_options(args.model_options)
    return values


def build_config(args):
    """The resolved TrainConfig: recipe <- --config file <- flags."""
    from alexnet.training import TrainConfig, load_config_file

    values = load_config_file(args.config) if args.config else {}
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    values.update(given_options(args))
    if values.get("data") is None:
        return TrainConfig.demo(**values)
    return TrainConfig.from_dict(values)


def run(args) -> int:
    from alexnet.training import resume, train

    if args.resume:
        if args.config:
            raise UserError("--resume uses the run's own config; --config cannot be given with it")
        result = resume(args.resume, progress=not args.quiet, **given_options(args))
    else:
        result = train(build_config(args), progress=not args.quiet)
    if result.interrupted:
        return 128 + int(getattr(signal, result.interrupted, signal.SIGINT))
    # The answer is printed even with --quiet (which silences progress), once under torchrun (rank 0).
    if result.run_dir is not None and int(os.environ.get("RANK", "0")) == 0:
        f = result.final
        err = ""
        if f.get("val_top1_err") is not None:
            err = f"; validation top-1 error {100 * f['val_top1_err']:.2f}%"
            if f.get("ten_crop_top1_err") is not None:
                err += f" (10 crops: {100 * f['ten_crop_top1_err']:.2f}%)"
        print(f"done: {f.get('epochs')} epochs, {f.get('steps')} steps in {f.get('seconds', 0):.0f} s{err}; "
              f"run directory {result.run_dir}")
    return 0
