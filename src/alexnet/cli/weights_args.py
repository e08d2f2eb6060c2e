"""The ``--weights`` options shared by predict, evaluate, kernels, features, neighbors and export."""

from __future__ import annotations

import argparse
import functools

import torch

from alexnet.cli.common import (
    add_device_arg,
    add_model_options_arg,
    add_threads_arg,
    parse_options,
    set_threads,
)
from alexnet.runtime import resolve_device

WEIGHTS_HELP = ("weights: a run directory, a checkpoint, a .safetensors file, a torchvision .pth, a Caffe "
                ".caffemodel, or 'torchvision' (downloads torchvision's pretrained alexnet_owt)")


def add_weights_args(p: argparse.ArgumentParser, *, device: bool = True) -> None:
    """``--weights`` and what goes with it; ``device``: also ``--device`` and ``--threads`` (a subcommand
    that runs the model)."""
    p.add_argument("--weights", required=True, metavar="W", help=WEIGHTS_HELP)
    p.add_argument("--arch", default=None, help="the model, for weights that do not record it")
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="class names for the model's outputs (synset_words.txt format, WNIDs or names)")
    p.add_argument("--mean", default=None, metavar="BINARYPROTO",
                   help="Caffe's mean image (imagenet_mean.binaryproto) for a .caffemodel")
    add_model_options_arg(p)
    if device:
        add_device_arg(p)
        add_threads_arg(p)


def device_from_args(args) -> torch.device:
    """``--threads`` applied, and the device ``--device`` names."""
    set_threads(args.threads)
    return resolve_device(args.device)


def load_from_args(args, *, device: torch.device | str | None = "cpu"):
    """The model ``--weights`` names, with its classes and preprocessing (see :func:`alexnet.load`)."""
    from alexnet.weights.load import load

    return load(args.weights, arch=args.arch, classes=args.classes, mean=args.mean,
                device=device or "cpu", progress=True, **parse_options(getattr(args, "model_options", None)))


def os_errors_as_user_errors(run):
    """Wrap a subcommand's ``run``: a file that cannot be read or written (permissions, a full disk, a
    folder where a file should be) is reported in one line like any other user mistake."""

    @functools.wraps(run)
    def wrapped(args):
        from alexnet.errors import UserError

        try:
            return run(args)
        except OSError as e:
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            raise UserError(f"{where}{e.strerror or e}") from None

    return wrapped
