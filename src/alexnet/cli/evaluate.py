"""``alexnet evaluate``: top-1 / top-5 error of weights on a prepared dataset (1 or 10 crops).

Under ``torchrun --nproc_per_node N -m alexnet.cli.main evaluate ...`` (or ``torchrun $(which alexnet)``)
each process evaluates a contiguous shard; rank 0 prints and writes the totals.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from alexnet.cli.common import int_in, output_path, set_threads
from alexnet.cli.weights_args import add_weights_args, load_from_args, os_errors_as_user_errors


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="top-1/top-5 error on a prepared dataset (1 or 10 crops)",
                       description="Top-1 and top-5 error (and accuracy) of weights on a prepared dataset, with "
                                   "the centre crop or the paper's 10 crops (softmax averaged). A dataset whose "
                                   "classes are a subset of the model's (Imagenette against ImageNet weights) "
                                   "is mapped by WNID. Works under torchrun (each image counted once).")
    add_weights_args(p)
    p.add_argument("--data", required=True, metavar="PREPARED", help="a dataset made by 'alexnet prepare'")
    p.add_argument("--crops", type=int, choices=(1, 10), default=1,
                   help="1 = centre crop (default), 10 = the paper's four corners + centre and mirrors")
    p.add_argument("--batch-size", type=int_in(1), default=64, help="images per batch (x10 crops with --crops 10; default 64)")
    p.add_argument("--limit", type=int_in(1), default=None, metavar="N",
                   help="evaluate N images evenly spread over the dataset (a quick estimate)")
    p.add_argument("--workers", type=int_in(1), default=None, metavar="N",
                   help="threads decoding images (default: the CPUs available, at most 8)")
    p.add_argument("--per-class", type=output_path(), default=None, metavar="FILE.csv", help="write per-class accuracy (fractions) to a CSV")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of text (errors and accuracies as fractions)")
    p.set_defaults(func=run)


def _init_distributed(device_arg):
    """(the process group's context, the device) from torchrun's environment, as ``alexnet train`` joins
    it (:func:`alexnet.training.distributed.init_distributed`); the device checked before joining."""
    from alexnet.runtime import resolve_device
    from alexnet.training.distributed import init_distributed

    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = resolve_device(device_arg or "auto",
                            local_rank=int(os.environ.get("LOCAL_RANK", "0")) if under_torchrun else None)
    return init_distributed(device.type), device


@os_errors_as_user_errors
def run(args) -> int:
    from alexnet.evaluation.data import open_prepared
    from alexnet.evaluation.evaluate import evaluate

    set_threads(args.threads)
    dataset = open_prepared(args.data)
    ctx, device = _init_distributed(args.device)
    rank, world = ctx.rank, ctx.world_size
    try:
        model = load_from_args(args, device=device)
        data_warp = bool(getattr(dataset, "meta", {}).get("warp", False))
        if rank == 0 and model.meta.preprocess.warp != data_warp:
            how = {True: "warped to a square (Caffe)", False: "shorter-side resized and centre-cropped"}
            print(f"alexnet evaluate: note: the weights expect images {how[model.meta.preprocess.warp]}, the dataset's "
                  f"were {how[data_warp]}; prepare it with{'' if model.meta.preprocess.warp else 'out'} --warp "
                  "to match", file=sys.stderr)
        indices = None
        if args.limit is not None:
            n = min(args.limit, len(dataset))
            indices = np.unique(np.linspace(0, len(dataset) - 1, n).round().astype(np.int64))
        result = evaluate(model, dataset, crops=args.crops, batch_size=args.batch_size, indices=indices,
                          workers=args.workers, rank=rank, world_size=world)
    finally:
        ctx.close()
    if rank != 0:
        return 0
    if args.per_class:
        result.write_per_class_csv(args.per_class)
    summary = {"weights": str(args.weights), "arch": model.meta.arch, "data": str(args.data), **result.summary()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        s = summary
        print(f"{model.meta.arch} on {args.data}: {s['images']} images, {args.crops} crop{'s' if args.crops > 1 else ''}"
              + (f", {world} processes" if world > 1 else ""))
        # The summary's fractions, printed in percent.
        print(f"top-1 error {100 * s['top1_error']:.2f}%  (accuracy {100 * s['top1_accuracy']:.2f}%)")
        print(f"top-{result.topk} error {100 * s['top5_error']:.2f}%  (accuracy {100 * s['top5_accuracy']:.2f}%)")
        if s["images_per_second"]:
            print(f"{s['images_per_second']:.1f} images/s", file=sys.stderr)
    if args.per_class:
        empty = sum(1 for row in result.per_class if not row["images"])
        print(f"wrote {args.per_class}: {len(result.per_class) - empty} classes with images"
              + (f" ({empty} of the dataset's classes have none here and are left out)" if empty else ""),
              file=sys.stderr)
    return 0
