"""``alexnet neighbors``: the dataset images nearest to query images in fc7 space (Figure 4, right)."""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from alexnet.cli.common import IMAGE_SUFFIXES, int_in, output_path
from alexnet.cli.weights_args import (
    add_weights_args,
    device_from_args,
    load_from_args,
    os_errors_as_user_errors,
)


def register(sub) -> None:
    p = sub.add_parser("neighbors", help="nearest dataset images in fc7 space (the paper's Figure 4, right)",
                       description="For each query image, the k images of a prepared dataset whose fc7 "
                                   "activations are nearest in Euclidean distance, drawn as a grid (one row "
                                   "per query).")
    add_weights_args(p)
    p.add_argument("--data", required=True, metavar="PREPARED")
    p.add_argument("--query", required=True, nargs="+", metavar="IMAGE", help="query images (files or folders)")
    p.add_argument("--k", type=int_in(1), default=6, help="neighbours per query (default 6)")
    p.add_argument("--out", required=True, type=output_path(*IMAGE_SUFFIXES), metavar="grid.png")
    p.add_argument("--features", default=None, metavar="FILE",
                   help="the dataset's features from 'alexnet features' (default: computed now)")
    p.add_argument("--batch-size", type=int_in(1), default=64)
    p.add_argument("--workers", type=int_in(1), default=None, metavar="N",
                   help="threads decoding the dataset's images (default: the CPUs available, at most 8)")
    p.add_argument("--json", action="store_true", help="also print the neighbours as JSON")
    p.set_defaults(func=run)


@os_errors_as_user_errors
def run(args) -> int:
    from alexnet.errors import UserError
    from alexnet.evaluation.data import open_prepared
    from alexnet.evaluation.predict import iter_image_files
    from alexnet.inspect.features import extract_features, image_features, load_features
    from alexnet.inspect.neighbors import nearest, plot_neighbors

    files = iter_image_files(args.query)
    if not files:
        raise UserError("no query images found in " + ", ".join(args.query))
    dataset = open_prepared(args.data)
    model = load_from_args(args, device=device_from_args(args))
    if args.features:
        feats = load_features(args.features)
        if feats.shape[0] != len(dataset):
            raise UserError(f"{args.features} holds {feats.shape[0]} feature rows but the dataset has "
                            f"{len(dataset)} images")
    else:
        feats = extract_features(model, dataset, batch_size=args.batch_size, workers=args.workers)
    squares = [model.meta.preprocess.square(f) for f in files]
    q = image_features(model, torch.from_numpy(np.stack(squares))).cpu().numpy()
    if q.shape[1] != feats.shape[1]:
        raise UserError(f"the features have {feats.shape[1]} dimensions but the model gives {q.shape[1]}")
    dist, idx = nearest(q, feats, args.k)
    classes = list(getattr(dataset, "classes", []) or [])
    labels = np.asarray(dataset.labels)

    def name(i: int) -> str:
        lab = int(labels[i])
        return str(classes[lab].get("name", lab)) if lab < len(classes) else str(lab)

    out = plot_neighbors(squares, [[dataset.get_uint8(int(i)) for i in row] for row in idx], args.out,
                         distances=dist, query_titles=[f.rsplit("/", 1)[-1][:24] for f in files],
                         neighbour_titles=[[name(int(i))[:18] for i in row] for row in idx])
    if args.json:
        print(json.dumps([{"query": f, "neighbors": [{"index": int(i), "label": int(labels[i]), "class": name(int(i)),
                                                      "distance": float(d)} for i, d in zip(row, drow, strict=True)]}
                          for f, row, drow in zip(files, idx, dist, strict=True)], indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0
