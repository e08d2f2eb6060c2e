"""``alexnet features``: the activations at the classifier's input (fc7, 4096-d, for the ImageNet nets) of
every image of a prepared dataset."""

from __future__ import annotations

import sys

import numpy as np

from alexnet.cli.common import int_in, output_path
from alexnet.cli.weights_args import (
    add_weights_args,
    device_from_args,
    load_from_args,
    os_errors_as_user_errors,
)


def register(sub) -> None:
    p = sub.add_parser("features", help="fc7 activations (4096-d; cifar_4layer: 1024-d) of every image of "
                                        "a prepared dataset",
                       description="Write the activations at the classifier's input (fc7 after ReLU, 4096 per "
                                   "image, for the ImageNet models; cifar_4layer's 1024 pooled conv3 "
                                   "values) of every image, centre crop, the weights' preprocessing. "
                                   ".npz: features, labels, indices and a fingerprint of the weights, "
                                   "arch and layer, so that 'alexnet neighbors --features' can refuse "
                                   "stale features; .npy: the (N, D) matrix alone.")
    add_weights_args(p)
    p.add_argument("--data", required=True, metavar="PREPARED", help="a dataset prepared by 'alexnet prepare'")
    p.add_argument("--out", required=True, type=output_path(".npz", ".npy"), metavar="FILE.npz|FILE.npy",
                   help="where to write the features (.npz with labels and the weights' fingerprint; .npy: the array)")
    p.add_argument("--batch-size", type=int_in(1), default=64, help="images per batch (default 64)")
    p.add_argument("--workers", type=int_in(1), default=None, metavar="N",
                   help="threads decoding images (default: the CPUs available, at most 8)")
    p.set_defaults(func=run)


@os_errors_as_user_errors
def run(args) -> int:
    from alexnet.evaluation.data import open_prepared
    from alexnet.inspect.features import extract_features, save_features

    dataset = open_prepared(args.data)
    model = load_from_args(args, device=device_from_args(args))
    feats = extract_features(model, dataset, batch_size=args.batch_size, workers=args.workers)
    out = save_features(args.out, feats, labels=np.asarray(dataset.labels), indices=np.arange(len(dataset)),
                        model=model)
    print(f"wrote {out}: {feats.shape[0]} x {feats.shape[1]} float32", file=sys.stderr)
    if out.suffix.lower() == ".npy":
        print("alexnet features: note: a .npy holds the matrix alone, without a record of the weights: "
              "'alexnet neighbors --features' cannot check it against them; write .npz to have it checked",
              file=sys.stderr)
    return 0
