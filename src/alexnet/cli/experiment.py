"""``alexnet experiment``: the paper's experiments.

    alexnet experiment relu-vs-tanh --data ../shared/data/cifar10-train.tar.gz --out runs/fig1
    alexnet experiment ablations --data prepared/imagenette --epochs 30 --out runs/ablations
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from alexnet.errors import UserError

# Flags generated from the experiments' config dataclasses (alexnet.cli.config_args), except these fields.
RELU_TANH_NOT_FLAGS = ("target_error", "activations")  # --target is in percent; both activations always run
ABLATION_NOT_FLAGS: tuple[str, ...] = ()


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
    f.add_argument("--data", required=True, metavar="CIFAR",
                   help="CIFAR-10 training images: the .tar.gz of <class>/<image> (../shared/data/"
                        "cifar10-train.tar.gz), a folder of class folders, or a prepared dataset")
    f.add_argument("--per-class", type=int, default=None, metavar="N",
                   help="use a stratified subset of N images per class (default: all)")
    names = [x.name for x in dataclasses.fields(ReluTanhConfig) if x.name not in RELU_TANH_NOT_FLAGS]
    add_config_args(f, ReluTanhConfig, names, metavars={"lrs": "LR,LR,..."})
    f.add_argument("--target", type=float, default=None, metavar="PERCENT",
                   help=f"{field_help(ReluTanhConfig, 'target_error').rstrip('.')}, in percent. Default: "
                        f"{100 * ReluTanhConfig.target_error:g}.".replace("%", "%%"))
    f.add_argument("--out", default="runs/relu_vs_tanh", help="output folder (default runs/relu_vs_tanh)")
    f.add_argument("--resume", action="store_true",
                   help="keep the activations that --out/result.json already holds finished")
    add_threads_arg(f)
    f.set_defaults(func=run_relu_vs_tanh, config_fields=names)

    a = exp.add_parser("ablations", help="the paper's ablations: the full model against each switch",
                       description="Train the paper's model and each ablation (no LRN, non-overlapping "
                                   "pooling, one tower with half the kernels, no PCA lighting, no dropout) "
                                   "with the same budget and seed; evaluate 1 and 10 crops; write a table "
                                   "in the paper's form.")
    a.add_argument("--data", required=True, metavar="PREPARED", help="training set prepared by 'alexnet prepare'")
    a.add_argument("--val", metavar="PREPARED", default=None,
                   help="validation set prepared by 'alexnet prepare' (default: hold out --val-fraction of --data)")
    names = [x.name for x in dataclasses.fields(AblationConfig) if x.name not in ABLATION_NOT_FLAGS]
    add_config_args(a, AblationConfig, names, metavars={"only": "NAME,NAME", "train_subset": "N",
                                                        "val_subset": "N"},
                    aliases={"val_fraction": "--val-split"})  # alexnet train's name for it
    a.add_argument("--out", default="runs/ablations", help="output folder (default runs/ablations)")
    a.add_argument("--resume", action="store_true",
                   help="skip the models whose results are already in --out")
    add_threads_arg(a)
    a.set_defaults(func=run_ablations, config_fields=names)


def run_relu_vs_tanh(args) -> int:
    from alexnet.cli.common import set_threads
    from alexnet.cli.config_args import given
    from alexnet.experiments.images import read_labelled_images
    from alexnet.experiments.relu_vs_tanh import ReluTanhConfig, run_relu_vs_tanh
    from alexnet.runtime import resolve_device

    if args.per_class is not None and args.per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {args.per_class}")
    values = given(args, args.config_fields)
    if args.target is not None:
        values["target_error"] = args.target / 100
    config = ReluTanhConfig(**values)
    config.validate()
    resolve_device(config.device)  # a one-line error now for a GPU that is not there
    set_threads(args.threads)
    t0 = time.perf_counter()
    images, labels, classes = read_labelled_images(args.data, per_class=args.per_class, seed=config.seed)
    if images.shape[1:] != (32, 32, 3):
        raise UserError(f"{args.data}: cifar_4layer needs 32x32 RGB images, got {images.shape[1]}x{images.shape[2]}")
    print(f"read {len(labels)} images of {len(classes)} classes in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    result = run_relu_vs_tanh(images, labels, config, out_dir=args.out, data_name=str(args.data),
                              resume=args.resume)
    print(result.summary())
    print(f"wrote {Path(args.out) / 'figure1.png'}, result.json, curves.csv, summary.txt")
    return 0


def run_ablations(args) -> int:
    from alexnet.cli.common import set_threads
    from alexnet.cli.config_args import given
    from alexnet.experiments.ablations import AblationConfig, run_ablations
    from alexnet.runtime import resolve_device

    config = AblationConfig(**given(args, args.config_fields))
    resolve_device(config.device)
    set_threads(args.threads)
    table = run_ablations(args.data, config, val=args.val, out_dir=args.out, resume=args.resume)
    print(table.markdown())
    print(f"wrote {Path(args.out) / 'ablations.md'} and ablations.json")
    return 0
