"""``alexnet neighbors``: the dataset images nearest to query images in fc7 space (Figure 4, right)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from alexnet.cli.common import IMAGE_SUFFIXES, int_in, output_path
from alexnet.cli.weights_args import (
    add_weights_args,
    device_from_args,
    load_from_args,
    os_errors_as_user_errors,
)


def distinct_names(paths: list[str]) -> list[str]:
    """Each path's file name, with as many of its folders as tell it apart from the others
    (``cat/0006.jpg``, ``ship/0006.jpg``: a teacher's queries were all titled ``0006.jpg``)."""
    parts = [Path(p).parts for p in paths]
    names = []
    for i, mine in enumerate(parts):
        for k in range(1, len(mine) + 1):
            name = "/".join(mine[-k:])
            if all(j == i or "/".join(other[-k:]) != name for j, other in enumerate(parts)):
                break
        names.append(name)
    return names


def register(sub) -> None:
    p = sub.add_parser("neighbors", help="nearest dataset images in fc7 space (the paper's Figure 4, right)",
                       description="For each query image, the k images of a prepared dataset whose fc7 "
                                   "activations are nearest in Euclidean distance, drawn as a grid (one row "
                                   "per query).")
    add_weights_args(p)
    p.add_argument("--data", required=True, metavar="PREPARED",
                   help="the dataset prepared by 'alexnet prepare' whose images are searched")
    p.add_argument("--query", required=True, nargs="+", metavar="IMAGE",
                   help="query images (files or folders); the plot draws the first 16, --json lists all")
    p.add_argument("--k", type=int_in(1), default=6,
                   help="neighbours per query (default 6; at most the dataset's images). The plot draws the "
                        "nearest 20; --json lists all k")
    p.add_argument("--out", required=True, type=output_path(*IMAGE_SUFFIXES), metavar="grid.png",
                   help="the figure: each query and its nearest images")
    p.add_argument("--features", default=None, metavar="FILE",
                   help="the dataset's features from 'alexnet features' (.npz; default: computed now). "
                        "Refused if they were computed with other weights")
    p.add_argument("--batch-size", type=int_in(1), default=64, help="images per batch (default 64)")
    p.add_argument("--workers", type=int_in(1), default=None, metavar="N",
                   help="threads decoding the dataset's images (default: the CPUs available, at most 8)")
    p.add_argument("--json", action="store_true", help="also print the neighbours as JSON")
    p.set_defaults(func=run)


def features_command(args) -> str:
    """The ``alexnet features`` command that writes the features these ``neighbors`` arguments need
    (as ``.npz``, the format that records the weights), for messages about a stale or unchecked file."""
    out = Path(args.features or "features.npz")
    parts = ["alexnet", "features", "--weights", str(args.weights)]
    if args.arch:
        parts += ["--arch", args.arch]
    if args.mean:
        parts += ["--mean", str(args.mean)]
    for option in args.model_options or []:
        parts += ["--opt", option]
    if out.suffix.lower() != ".npz":
        out = out.with_suffix(".npz")
    parts += ["--data", str(args.data), "--out", str(out)]
    return shlex.join(parts)


@os_errors_as_user_errors
def run(args) -> int:
    from alexnet.errors import UserError
    from alexnet.evaluation.data import open_prepared
    from alexnet.evaluation.plots import guess_label
    from alexnet.evaluation.predict import iter_image_files
    from alexnet.inspect.features import check_features, extract_features, image_features, read_features
    from alexnet.inspect.neighbors import (
        MAX_PLOT_NEIGHBOURS,
        MAX_PLOT_QUERIES,
        nearest,
        plot_neighbors,
        short_class_name,
    )

    files = iter_image_files(args.query)
    if not files:
        raise UserError("no query images found in " + ", ".join(args.query))
    dataset = open_prepared(args.data)
    labels = np.asarray(dataset.labels)
    if len(labels) == 0:
        raise UserError(f"{args.data} has no images to search")
    # A file that is not a features file is refused before the model is loaded.
    stored = read_features(args.features) if args.features else None
    model = load_from_args(args, device=device_from_args(args))
    if stored is not None:
        note = check_features(stored, model, labels=labels, recompute=features_command(args))
        if note:
            print(f"alexnet neighbors: note: {note}", file=sys.stderr)
        feats = stored.features
    else:
        feats = extract_features(model, dataset, batch_size=args.batch_size, workers=args.workers)
    # the queries in batches; only the squares of the rows the plot draws are kept
    squares, q = [], []
    for start in range(0, len(files), args.batch_size):
        batch = [model.meta.preprocess.square(f) for f in files[start:start + args.batch_size]]
        q.append(image_features(model, torch.from_numpy(np.stack(batch))).cpu().numpy())
        squares += batch[:max(0, MAX_PLOT_QUERIES - len(squares))]
    q = np.concatenate(q)
    if len(files) > MAX_PLOT_QUERIES:
        listed = "the JSON lists" if args.json else "--json lists"
        print(f"alexnet neighbors: note: the plot shows the first {MAX_PLOT_QUERIES} of the {len(files)} query "
              f"images (one row each); {listed} the neighbours of all {len(files)}", file=sys.stderr)
    if q.shape[1] != feats.shape[1]:
        raise UserError(f"the features have {feats.shape[1]} dimensions but the model gives {q.shape[1]}")
    k = min(args.k, len(feats))
    if k < args.k:
        print(f"alexnet neighbors: note: {args.data} has {len(feats)} images: --k {args.k} gives all {k} of "
              "them, nearest first", file=sys.stderr)
    dist, idx = nearest(q, feats, k)
    drawn = min(k, MAX_PLOT_NEIGHBOURS)
    if drawn < k:
        listed = "the JSON lists" if args.json else "--json lists"
        print(f"alexnet neighbors: note: the plot shows the nearest {drawn} of the {k} neighbours of each "
              f"query (at most {MAX_PLOT_NEIGHBOURS} are drawn); {listed} all {k}", file=sys.stderr)
    classes = list(getattr(dataset, "classes", []) or [])

    def name(i: int) -> str:
        lab = int(labels[i])
        return str(classes[lab].get("name", lab)) if lab < len(classes) else str(lab)

    def query_class(path: str) -> str | None:
        """The query's class when its folder or file name is a WNID of the dataset's (as predict reads it)."""
        lab = guess_label(path, [dict(c, index=j) for j, c in enumerate(classes) if isinstance(c, dict)])
        return None if lab is None else str(classes[lab].get("name") or classes[lab].get("wnid"))

    rows = len(squares)
    shown = idx[:rows, :drawn]  # only the drawn neighbours' images are decoded
    out = plot_neighbors(squares, [[dataset.get_uint8(int(i)) for i in row] for row in shown], args.out,
                         distances=dist[:rows, :drawn], query_titles=distinct_names(files[:rows]),
                         neighbour_titles=[[short_class_name(name(int(i))) for i in row] for row in shown],
                         query_classes=[query_class(f) for f in files[:rows]], weights=str(args.weights),
                         feature_dims=int(feats.shape[1]), data=str(args.data))
    if args.json:
        print(json.dumps([{"query": f, "neighbors": [{"index": int(i), "label": int(labels[i]), "class": name(int(i)),
                                                      "distance": float(d)} for i, d in zip(row, drow, strict=True)]}
                          for f, row, drow in zip(files, idx, dist, strict=True)], indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0
