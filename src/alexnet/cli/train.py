"""``alexnet train``: the paper's recipe on a prepared dataset, or the built-in demo without ``--data``.

Values come from, lowest first: the paper's recipe (or the demo's, without data), ``--config FILE``
(YAML or TOML, keys as in :class:`alexnet.training.TrainConfig`), then the flags given.
"""

from __future__ import annotations

import dataclasses
import signal

from alexnet import runtime
from alexnet.cli.common import add_model_options_arg, add_threads_arg, parse_options, set_threads
from alexnet.errors import UserError
from alexnet.progress import count

# Every TrainConfig field is a flag (alexnet.cli.config_args: help from its docstring, default from the
# dataclass), except model_options, given as --opt NAME=VALUE.
NOT_FLAGS = ("model_options",)


def register(sub) -> None:
    from alexnet.cli.config_args import add_config_args
    from alexnet.training.config import DEMO_RECIPE, TrainConfig

    p = sub.add_parser(
        "train", help="train a model (the paper's recipe; a built-in demo without --data)",
        description="Train a registered model and write a run directory (config, metrics.csv, curves.png, "
                    "checkpoints, weights). Defaults are the paper's recipe with an lr warm-up "
                    "(--warmup-epochs 0: the paper's); without --data, a short CPU demo on generated "
                    "images (measured times: docs/TIMINGS.md). Under torchrun, trains with "
                    "DistributedDataParallel.")
    p.add_argument("--config", metavar="FILE", help="YAML or TOML file of training options (flags override it)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint, same config")
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_FLAGS]
    add_config_args(p, TrainConfig, names, also={"the demo": DEMO_RECIPE})
    add_model_options_arg(p)
    add_threads_arg(p, default="this process's share of the CPUs")
    p.add_argument("--quiet", action="store_true", help="no progress output (the final result line is still printed)")
    p.set_defaults(func=run, config_fields=names)


def given_options(args) -> dict:
    """The training options given as flags (model options included)."""
    from alexnet.cli.config_args import given

    values = given(args, args.config_fields)
    if args.model_options:
        values["model_options"] = parse_options(args.model_options)
    return values


def build_config(args):
    """The resolved TrainConfig: recipe <- --config file <- flags."""
    from alexnet.training import TrainConfig, load_config_file

    values = load_config_file(args.config) if args.config else {}
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    if "opt" in values:  # --opt's own name in a file: a mapping ({lrn: false}) or a list of "NAME=VALUE"
        if "model_options" in values:
            raise UserError(f"{args.config}: 'opt' and 'model_options' are the same option; give one of them")
        opt = values.pop("opt")
        is_list = isinstance(opt, list) and all(isinstance(o, str) for o in opt)
        values["model_options"] = parse_options(opt) if is_list else opt
    flags = given_options(args)
    if isinstance(values.get("model_options"), dict) and "model_options" in flags:  # --opt adds to the file's
        flags["model_options"] = {**values["model_options"], **flags["model_options"]}
    values.update(flags)
    if values.get("data") is None:
        return TrainConfig.demo(**values)
    return TrainConfig.from_dict(values)


def run(args) -> int:
    from alexnet.training import resume, train

    set_threads(args.threads)
    if args.resume:
        if args.config:
            raise UserError("--resume uses the run's own config; --config cannot be given with it")
        result = resume(args.resume, progress=not args.quiet, **given_options(args))
    else:
        result = train(build_config(args), progress=not args.quiet)
    if result.interrupted:
        return 128 + int(getattr(signal, result.interrupted, signal.SIGINT))
    # The answer is printed even with --quiet (which silences progress), once under torchrun (rank 0).
    if result.run_dir is not None and runtime.is_main():
        f = result.final
        err = ""
        if f.get("val_top1_err") is not None:
            err = f"; validation top-1 error {100 * f['val_top1_err']:.2f}%"
            if f.get("ten_crop_top1_err") is not None:
                err += f" (10 crops: {100 * f['ten_crop_top1_err']:.2f}%)"
        took = f" in {f['seconds']:.0f} s" if "seconds" in f else ""  # (none: a complete run resumed)
        print(f"done: {count(f.get('epochs', 0), 'epoch')}, {count(f.get('steps', 0), 'step')}{took}{err}; "
              f"run directory {result.run_dir}")
    return 0
