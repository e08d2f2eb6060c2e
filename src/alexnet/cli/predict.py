"""``alexnet predict``: top-k classes of images, as text, JSON, or the paper's Figure 4 (left)."""

from __future__ import annotations

import json
import os
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
from alexnet.errors import UserError
from alexnet.evaluation.plots import PLOT_LIMIT

PLOT_MAX_LIMIT = 128
"""--plot-max's ceiling: 16 rows of 8, some 4,300 px tall and a few MB; past that, read the JSON."""


def register(sub) -> None:
    p = sub.add_parser("predict", help="top-k classes of images (text, JSON or a Figure 4 plot)",
                       description="Classify images with the centre crop (or the paper's 10 crops) of the "
                                   "evaluation's preprocessing. Unreadable files are reported on stderr and "
                                   "skipped; the exit code is then 1.")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    add_weights_args(p)
    p.add_argument("--topk", type=int_in(1), default=5, help="classes per image (default 5)")
    p.add_argument("--crops", type=int, choices=(1, 10), default=1, help="1 = centre crop (default), 10 = the paper's 10")
    p.add_argument("--batch-size", type=int_in(1), default=32, help="images per batch (default 32)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--plot", metavar="OUT.png", default=None, type=output_path(*IMAGE_SUFFIXES),
                   help="draw the images with their top-5 bars (the paper's Figure 4, left): the first "
                        "--plot-max of them, in the order they are listed")
    p.add_argument("--plot-max", type=int_in(1, PLOT_MAX_LIMIT), default=PLOT_LIMIT, metavar="N",
                   help=f"most images in the --plot figure (default {PLOT_LIMIT}; the text and JSON list them all)")
    p.set_defaults(func=run)


def _load_squares(files, pre):
    """(path, square or None, error or None) per file, decoded on a few threads (Pillow releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(path):
        try:
            return path, pre.square(path), None
        except UserError as e:
            return path, None, str(e)

    with ThreadPoolExecutor(max_workers=4) as pool:
        yield from pool.map(one, files)


@os_errors_as_user_errors
def run(args) -> int:
    from alexnet.evaluation.plots import guess_label, plot_predictions
    from alexnet.evaluation.predict import Prediction, class_probabilities, iter_image_files, top_classes

    files = iter_image_files(args.images)
    if not files:
        raise UserError("no image files found in " + ", ".join(args.images))
    device = device_from_args(args)
    model = load_from_args(args, device=device)
    from alexnet.weights.load import model_classes

    # a file without class names (a model saved after reset_classifier): placeholders, one per output
    pre, classes = model.meta.preprocess, model_classes(model)
    if args.topk > len(classes):
        print(f"alexnet predict: --topk {args.topk}: the model has {len(classes)} classes; listing them all",
              file=sys.stderr)
    failures, results, shown = [], [], []  # failures: (path, reason); shown: (square, prediction) of the first --plot-max, for the plot

    def flush(batch):
        squares = torch.from_numpy(np.stack([sq for _, sq in batch]))
        probs = class_probabilities(model, squares, ten_crop=args.crops == 10, preprocess=pre).cpu()
        for (path, sq), top in zip(batch, top_classes(probs, classes, max(args.topk, 5)), strict=True):
            pred = Prediction(path, top[:args.topk])
            results.append(pred)
            if args.plot and len(shown) < args.plot_max:
                shown.append((sq, Prediction(path, top[:5])))
            if not args.json:
                print(path)
                width = len(str(len(pred.top)))  # "  9." and " 10." line up
                for rank, t in enumerate(pred.top, 1):
                    wnid = f" ({t['wnid']})" if t.get("wnid") and t["wnid"] != t.get("name") else ""
                    print(f"  {rank:>{width}}. {100 * t['probability']:6.2f}%  {t['name']}{wnid}")
                sys.stdout.flush()

    batch = []
    with torch.inference_mode():
        for path, sq, err in _load_squares(files, pre):
            if err is not None:
                failures.append({"image": path, "error": err})
                print(f"alexnet predict: error: {err}", file=sys.stderr)
                continue
            batch.append((path, sq))
            if len(batch) == args.batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    if args.json:
        print(json.dumps({"weights": str(args.weights), "crops": args.crops,
                          "images": [p.to_dict() for p in results],
                          "failed": len(failures), "errors": failures}, indent=2))
    if args.plot and shown:
        labels = [guess_label(p.source, classes) for _, p in shown]
        known = any(lab is not None for lab in labels)
        title = (f"{os.path.basename(os.path.normpath(str(args.weights)))}: the most probable classes"
                 + ("; under an image in a <wnid> folder its true class, whose bar is red" if known else ""))
        out = plot_predictions([sq for sq, _ in shown], [p for _, p in shown], args.plot,
                               labels=labels if known else None, classes=classes, title=title)
        print(f"wrote {out}", file=sys.stderr)
        if len(results) > len(shown):  # on stderr: stdout stays the predictions (and valid JSON)
            print(f"alexnet predict: the plot shows the first {len(shown)} of {len(results)} images, in the order "
                  f"listed; --plot-max N draws more or fewer (the {'JSON' if args.json else 'text'} output "
                  f"lists all {len(results)})", file=sys.stderr)
    if failures:
        if len(files) > 1:  # one image: its own line already says it all
            print(f"alexnet predict: {len(failures)} of {len(files)} images could not be read", file=sys.stderr)
        return 1
    return 0
