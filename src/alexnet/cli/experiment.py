"""``alexnet experiment``: the paper's experiments.

    alexnet experiment relu-vs-tanh --data ../shared/data/cifar10-train.tar.gz --out runs/fig1
    alexnet experiment ablations --data prepared/imagenette --epochs 30 --out runs/ablations
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from alexnet.errors import UserError


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def register(sub) -> None:
    from alexnet.cli.common import ArgumentParser

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
    f.add_argument("--lrs", type=_floats, default=(0.001, 0.003, 0.01, 0.03), metavar="LR,LR,...",
                   help="learning rates swept for each activation (default 0.001,0.003,0.01,0.03)")
    f.add_argument("--sweep-epochs", type=int, default=2, help="epochs per swept learning rate (default 2)")
    f.add_argument("--max-epochs", type=int, default=40, help="stop an activation after this many epochs "
                                                                "(default 40)")
    f.add_argument("--target", type=float, default=25.0, metavar="PERCENT",
                   help="training error to reach, in percent (default 25, the paper's)")
    f.add_argument("--batch-size", type=int, default=128)
    f.add_argument("--momentum", type=float, default=0.9)
    f.add_argument("--no-lrn", action="store_true", help="drop the net's LRN layers")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    f.add_argument("--out", default="runs/relu_vs_tanh", help="output folder (default runs/relu_vs_tanh)")
    f.add_argument("--resume", action="store_true",
                   help="keep the activations that --out/result.json already holds finished")
    _threads_arg(f)
    f.set_defaults(func=run_relu_vs_tanh)

    a = exp.add_parser("ablations", help="the paper's ablations: the full model against each switch",
                       description="Train the paper's model and each ablation (no LRN, non-overlapping "
                                   "pooling, one tower with half the kernels, no PCA lighting, no dropout) "
                                   "with the same budget and seed; evaluate 1 and 10 crops; write a table "
                                   "in the paper's form.")
    from alexnet.experiments.ablations import ABLATIONS

    a.add_argument("--data", required=True, metavar="PREPARED", help="training set prepared by 'alexnet prepare'")
    a.add_argument("--val", metavar="PREPARED", default=None,
                   help="validation set prepared by 'alexnet prepare' (default: hold out --val-fraction of --data)")
    a.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of --data held out for validation when --val is not given (default 0.1)")
    a.add_argument("--epochs", type=int, required=True, help="epochs for every model (the same budget)")
    a.add_argument("--only", default=None, metavar="NAME,NAME",
                   help=f"run only these (default: all): {', '.join(ABLATIONS)}")
    a.add_argument("--arch", default="alexnet", help="model to ablate (default alexnet, the paper's)")
    a.add_argument("--batch-size", type=int, default=128)
    a.add_argument("--lr", type=float, default=0.01, help="initial learning rate (default 0.01, the paper's)")
    a.add_argument("--train-subset", type=int, default=None, metavar="N",
                   help="train on a stratified subset of N images of --data (a small-scale run)")
    a.add_argument("--val-subset", type=int, default=None, metavar="N",
                   help="evaluate on a stratified subset of N validation images (a small-scale run)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    a.add_argument("--workers", type=int, default=None, help="data loading threads")
    a.add_argument("--no-ten-crop", action="store_true", help="evaluate the centre crop only")
    a.add_argument("--out", default="runs/ablations", help="output folder (default runs/ablations)")
    a.add_argument("--resume", action="store_true",
                   help="skip the models whose results are already in --out")
    _threads_arg(a)
    a.set_defaults(func=run_ablations)


def _threads_arg(p) -> None:
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch's operators (default: torch's choice; 1 is often fastest "
                        "on a small, busy CPU)")


def _set_threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise UserError(f"--threads must be at least 1, got {n}")
        import os

        import torch

        torch.set_num_threads(n)
        os.environ["OMP_NUM_THREADS"] = str(n)  # the trainer keeps an explicit OMP_NUM_THREADS


def run_relu_vs_tanh(args) -> int:
    from alexnet.experiments.images import read_labelled_images
    from alexnet.experiments.relu_vs_tanh import ReluTanhConfig, run_relu_vs_tanh

    if args.per_class is not None and args.per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {args.per_class}")
    config = ReluTanhConfig(lrs=args.lrs, sweep_epochs=args.sweep_epochs, target_error=args.target / 100,
                            max_epochs=args.max_epochs, batch_size=args.batch_size, momentum=args.momentum,
                            lrn=not args.no_lrn, seed=args.seed, device=args.device)
    config.validate()
    _check_device(args.device)
    _set_threads(args.threads)
    t0 = time.perf_counter()
    images, labels, classes = read_labelled_images(args.data, per_class=args.per_class, seed=args.seed)
    if images.shape[1:] != (32, 32, 3):
        raise UserError(f"{args.data}: cifar_4layer needs 32x32 RGB images, got {images.shape[1]}x{images.shape[2]}")
    print(f"read {len(labels)} images of {len(classes)} classes in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    result = run_relu_vs_tanh(images, labels, config, out_dir=args.out, data_name=str(args.data),
                              resume=args.resume)
    print(result.summary())
    print(f"wrote {Path(args.out) / 'figure1.png'}, result.json, curves.csv")
    return 0


def _check_device(device: str | None) -> None:
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} asked for but CUDA is not available")


def run_ablations(args) -> int:
    from alexnet.experiments.ablations import AblationConfig, run_ablations

    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    config = AblationConfig(epochs=args.epochs, arch=args.arch, batch_size=args.batch_size, lr=args.lr,
                            seed=args.seed, device=args.device, workers=args.workers,
                            ten_crop=not args.no_ten_crop, val_fraction=args.val_fraction,
                            train_subset=args.train_subset,
                            val_subset=args.val_subset, only=only)
    _check_device(args.device)
    _set_threads(args.threads)
    table = run_ablations(args.data, config, val=args.val, out_dir=args.out, resume=args.resume)
    print(table.markdown())
    print(f"wrote {Path(args.out) / 'ablations.md'} and ablations.json")
    return 0
