"""``alexnet experiment``: the paper's experiments.

    alexnet experiment relu-vs-tanh --data ../shared/data/cifar10-train.tar.gz --out runs/fig1
    alexnet experiment ablations --data prepared/imagenette --epochs 30 --out runs/ablations

``--resume`` continues the run in ``--out``: the settings that change the results and are not given come
from the earlier run (its result.json / ablations.json), those given must agree with it (else one line
naming the flags to repeat, before any data is read). SIGINT/SIGTERM end an experiment with the command
that continues it.
"""

from __future__ import annotations

import dataclasses
import shlex
import signal
import sys
import time
from pathlib import Path

from alexnet.cli.common import sigterm_interrupts
from alexnet.errors import UserError

# Flags generated from the experiments' config dataclasses (alexnet.cli.config_args), except these fields.
RELU_TANH_NOT_FLAGS = ("target_error", "activations")  # --target is in percent; both activations always run
ABLATION_NOT_FLAGS: tuple[str, ...] = ()
RESUME_TAKES = "Required, except with --resume (the earlier run's)"


def register(sub) -> None:
    from alexnet.cli.common import ArgumentParser, add_threads_arg
    from alexnet.cli.config_args import add_config_args, field_help
    from alexnet.experiments.ablations import AblationConfig
    from alexnet.experiments.relu_vs_tanh import ReluTanhConfig

    p = sub.add_parser("experiment", help="reproduce the paper's experiments (Figure 1, ablations)",
                       description="Reproduce the paper's experiments.")
    # No experiment named is a usage error like any other: one line, exit 2.
    p.set_defaults(func=lambda args: p.error("name an experiment: relu-vs-tanh or ablations"))
    exp = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", title="experiments",
                           parser_class=ArgumentParser)

    f = exp.add_parser("relu-vs-tanh", help="Figure 1: epochs to 25%% training error, ReLU vs tanh",
                       description="Figure 1: train cifar_4layer with ReLU and with tanh (each with the best "
                                   "learning rate of a small sweep, no regularisation) and report the epochs "
                                   "each needs to reach 25% running training error.")
    f.add_argument("--data", metavar="CIFAR",
                   help="CIFAR-10 training images: the .tar.gz of <class>/<image> (../shared/data/"
                        "cifar10-train.tar.gz), a folder of class folders, or a prepared dataset. " + RESUME_TAKES)
    f.add_argument("--per-class", type=int, default=None, metavar="N",
                   help="use a stratified subset of N images per class (default: all)")
    names = [x.name for x in dataclasses.fields(ReluTanhConfig) if x.name not in RELU_TANH_NOT_FLAGS]
    add_config_args(f, ReluTanhConfig, names, metavars={"lrs": "LR,LR,..."})
    f.add_argument("--target", type=float, default=None, metavar="PERCENT",
                   help=f"{field_help(ReluTanhConfig, 'target_error').rstrip('.')}, in percent. Default: "
                        f"{100 * ReluTanhConfig.target_error:g}.".replace("%", "%%"))
    f.add_argument("--out", default="runs/relu_vs_tanh", help="output folder (default runs/relu_vs_tanh)")
    f.add_argument("--resume", action="store_true",
                   help="keep the activations that --out/result.json already holds finished and train the "
                        "others; the settings not given are that run's, those given must agree with them")
    add_threads_arg(f)
    f.set_defaults(func=run_relu_vs_tanh, config_fields=names)

    a = exp.add_parser("ablations", help="the paper's ablations: the full model against each switch",
                       description="Train the paper's model and each ablation (no LRN, non-overlapping "
                                   "pooling, one tower with half the kernels, no PCA lighting, no dropout) "
                                   "with the same budget and seed; evaluate 1 and 10 crops; write a table "
                                   "in the paper's form.")
    a.add_argument("--data", metavar="PREPARED",
                   help=f"training set prepared by 'alexnet prepare'. {RESUME_TAKES}")
    a.add_argument("--val", metavar="PREPARED", default=None,
                   help="validation set prepared by 'alexnet prepare' (default: hold out --val-fraction of --data)")
    names = [x.name for x in dataclasses.fields(AblationConfig) if x.name not in ABLATION_NOT_FLAGS]
    add_config_args(a, AblationConfig, names, metavars={"only": "NAME,NAME", "train_subset": "N",
                                                        "val_subset": "N"},
                    aliases={"val_fraction": "--val-split"},  # alexnet train's name for it
                    optional={"epochs": RESUME_TAKES})
    a.add_argument("--out", default="runs/ablations", help="output folder (default runs/ablations)")
    a.add_argument("--resume", action="store_true",
                   help="skip the models whose results are already in --out, continue an interrupted one from "
                        "its checkpoint; the settings not given are that run's, those given must agree with them")
    add_threads_arg(a)
    a.set_defaults(func=run_ablations, config_fields=names)


def _require(args, experiment: str, **settings) -> None:
    """The flags a new run needs (with --resume they come from the earlier run), as argparse says so."""
    missing = [f"--{name}" for name, value in settings.items() if value is None]
    if missing:
        where = f"; {args.out} holds no run to resume" if args.resume else ""
        raise UserError(f"the following arguments are required: {', '.join(missing)}{where}")


def _continue_command(experiment: str, args, flags) -> str:
    """The command as given (its flags, ``flags(name, value)`` spelling each setting) plus --resume."""
    words = ["alexnet", "experiment", experiment, "--data", str(args.data)]
    for name in ("val", "per_class", *args.config_fields):
        if getattr(args, name, None) is not None:
            words += flags(name, getattr(args, name))
    if getattr(args, "target", None) is not None:
        words += ["--target", f"{args.target:g}"]
    words += ["--out", str(args.out)]
    if args.threads is not None:
        words += ["--threads", str(args.threads)]
    return shlex.join(words + ["--resume"])


def _interrupted(experiment: str, args, stop: KeyboardInterrupt, kept: str, flags) -> int:
    """One line: what stopped the run, what is kept, and the command that continues it; 128 + the signal."""
    name = getattr(stop, "signal", "SIGINT")
    print(f"alexnet experiment {experiment}: interrupted ({name}); {kept}; continue with: "
          f"{_continue_command(experiment, args, flags)}", file=sys.stderr, flush=True)
    return 128 + int(getattr(signal, name, signal.SIGINT))


def _relu_tanh_kept(out: Path, config) -> str:
    """What an interrupted Figure 1 run keeps: its finished activations (the loop keeps no checkpoints, so
    an activation still training starts again from its sweep)."""
    from alexnet.experiments.relu_vs_tanh import RESULT_FILE, result_from_json

    try:
        results = result_from_json(out / RESULT_FILE).results
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        results = {}
    done = [a for a, r in results.items() if r.reached or len(r.curve) >= config.max_epochs]
    again = "an unfinished activation starts again from its learning-rate sweep"
    if done:
        return f"{' and '.join(done)} finished and kept in {out / RESULT_FILE}; {again}"
    return f"no activation had finished yet ({again})"


def run_relu_vs_tanh(args) -> int:
    from alexnet.cli.common import set_threads
    from alexnet.cli.config_args import given
    from alexnet.experiments.images import read_labelled_images
    from alexnet.experiments.relu_vs_tanh import (
        ReluTanhConfig,
        check_fresh_out,
        resume_settings,
        run_relu_vs_tanh,
        setting_flags,
    )
    from alexnet.runtime import resolve_device

    if args.per_class is not None and args.per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {args.per_class}")
    values = given(args, args.config_fields)
    if args.target is not None:
        values["target_error"] = args.target / 100
    per_class = args.per_class
    if args.resume:  # before any image is read: the earlier run's settings, or a refusal naming the flags
        earlier = resume_settings(args.out, values, data=args.data, per_class=per_class)
        if earlier is not None:
            values, per_class, args.data = earlier.values, earlier.per_class, earlier.data
            print(earlier.describe(), file=sys.stderr)
    _require(args, "relu-vs-tanh", data=args.data)
    if not args.resume:
        check_fresh_out(args.out)  # before the images are read (all of CIFAR-10: seconds)
    config = ReluTanhConfig(**values)
    config.validate()
    resolve_device(config.device)  # a one-line error now for a GPU that is not there
    set_threads(args.threads)
    try:
        with sigterm_interrupts():
            t0 = time.perf_counter()
            images, labels, classes = read_labelled_images(args.data, per_class=per_class, seed=config.seed)
            if images.shape[1:] != (32, 32, 3):
                raise UserError(f"{args.data}: cifar_4layer needs 32x32 RGB images, got "
                                f"{images.shape[1]}x{images.shape[2]}")
            print(f"read {len(labels)} images of {len(classes)} classes in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)
            result = run_relu_vs_tanh(images, labels, config, out_dir=args.out,
                                      data_name=str(Path(args.data).resolve()), per_class=per_class,
                                      resume=args.resume)
    except KeyboardInterrupt as stop:
        return _interrupted("relu-vs-tanh", args, stop, _relu_tanh_kept(Path(args.out), config), setting_flags)
    print(result.summary())
    print(f"wrote {Path(args.out) / 'figure1.png'}, result.json, curves.csv, summary.txt")
    return 0


def run_ablations(args) -> int:
    from alexnet.cli.common import set_threads
    from alexnet.cli.config_args import given
    from alexnet.experiments.ablations import AblationConfig, resume_settings, run_ablations, setting_flags
    from alexnet.runtime import resolve_device

    values, val = given(args, args.config_fields), args.val
    if args.resume:  # before any data is opened: the earlier run's settings, or a refusal naming the flags
        earlier = resume_settings(args.out, values, data=args.data, val=val)
        if earlier is not None:
            values, val, args.data = earlier.values, earlier.val, earlier.data
            print(earlier.describe(), file=sys.stderr)
    _require(args, "ablations", data=args.data, epochs=values.get("epochs"))
    config = AblationConfig(**values)
    resolve_device(config.device)
    set_threads(args.threads)
    try:
        with sigterm_interrupts():
            table = run_ablations(args.data, config, val=val, out_dir=args.out, resume=args.resume)
    except KeyboardInterrupt as stop:
        model = getattr(stop, "model", None)
        kept = (f"{model}'s checkpoint and the finished models are kept in {args.out}" if model
                else f"the finished models are kept in {args.out}")
        return _interrupted("ablations", args, stop, kept, setting_flags)
    print(table.markdown())
    print(f"wrote {Path(args.out) / 'ablations.md'} and ablations.json")
    return 0
