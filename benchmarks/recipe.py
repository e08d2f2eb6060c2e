"""What each recipe learns on real images: held-out error per epoch, the same budget for every variant.

    python benchmarks/recipe.py [--data PREPARED] [--val PREPARED] [--train-subset 1000] [--val-subset 300]
        [--epochs 8] [--batch-size 128] [--device cpu|cuda] [--variants default,literal,...] [--seeds 0]
        [--json PATH]

Every variant trains through ``alexnet.training.train`` (the project's trainer, loader and augmentation)
from the same seed, on the same images, for the same number of epochs, and is evaluated on the same
held-out images after every epoch (centre crop). Without ``--data``, Imagenette's JPEGs from
../shared/data are prepared once into a temporary folder and ``--val-fraction`` of them is held out;
``--train-subset`` / ``--val-subset`` take stratified subsets into memory (the whole training set's mean
image and PCA), for a budget a CPU can afford. The variants (``--variants``, default: all) are the rows of
docs/RECIPE.md's table; each is the default recipe with a few fields changed (``VARIANTS``).

Prints one line per epoch and a table at the end, and saves JSON (machine, versions, command, every
variant's per-epoch history and final errors) to ``--json`` (default benchmarks/results/recipe-<device>.json).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from common import SHARED, machine_info, write_json  # noqa: E402

from alexnet.data import PreparedDataset, prepare_dataset, split_indices  # noqa: E402
from alexnet.experiments.ablations import _stratified, _subset  # noqa: E402
from alexnet.training import TrainConfig, train  # noqa: E402
from alexnet.training.config import PAPER_RECIPE  # noqa: E402

# name -> (what it is, changes to the default recipe). "literal" is the paper's recipe as written.
VARIANTS: dict[str, tuple[str, dict]] = {
    "default": ("the default recipe (TrainConfig())", {}),
    "literal": ("the paper's recipe as written (--warmup-epochs 0): lr 0.01 from the first step", PAPER_RECIPE),
    "literal_lr0.001": ("the paper's recipe at lr 0.001", {**PAPER_RECIPE, "lr": 0.001}),
    "literal_no_lrn": ("the paper's recipe without LRN", {**PAPER_RECIPE, "model_options": {"lrn": False}}),
    "literal_convnet_bias": ("the paper's recipe with cuda-convnet's bias lr x2 and no bias decay",
                             {**PAPER_RECIPE, "bias_lr_factor": 2.0, "bias_decay": False}),
    "literal_kaiming": ("the paper's recipe with He init (--init kaiming)", {**PAPER_RECIPE, "init": "kaiming"}),
    "caffe": ("alexnet_caffe (bias 0.1, fc6/fc7 std 0.005), the paper's recipe otherwise",
              {**PAPER_RECIPE, "arch": "alexnet_caffe"}),
    "owt": ("alexnet_owt (torchvision's net and init), the paper's recipe otherwise",
            {**PAPER_RECIPE, "arch": "alexnet_owt"}),
}


def _data(args, tmp: Path):
    """(training dataset, held-out dataset, description); (None, None, ...) when the trainer should read
    ``--data`` and ``--val`` itself."""
    if args.data is None:
        tar = SHARED / "imagenette-train.tar.gz"
        if not tar.is_file():
            raise SystemExit(f"no --data given and {tar} is missing")
        print(f"preparing {tar} (raw) into {tmp} ...", flush=True)
        prepare_dataset(tar, tmp / "imagenette", format="raw", progress=False)
        args.data = tmp / "imagenette"
    full = PreparedDataset(args.data)
    if args.val is not None and not args.train_subset and not args.val_subset:
        # Whole prepared sets (e.g. on a GPU): the trainer reads them from disk, nothing is held in memory.
        return None, None, (f"{len(full)} training images of {args.data}, {len(PreparedDataset(args.val))} "
                            f"held-out images of {args.val}, {len(full.classes)} classes")
    if args.val is not None:
        val_full = PreparedDataset(args.val)
        train_idx, val_idx = np.arange(len(full)), np.arange(len(val_full))
    else:
        val_full = full
        train_idx, val_idx = split_indices(len(full), args.val_fraction, 0)
    if args.train_subset:
        train_idx = _stratified(np.asarray(full.labels, np.int64), train_idx, args.train_subset, 0)
    if args.val_subset:
        val_idx = _stratified(np.asarray(val_full.labels, np.int64), val_idx, args.val_subset, 0)
    train_ds = _subset(full, train_idx)
    val_ds = _subset(val_full, val_idx, stats_from=full)
    desc = (f"{len(train_idx)} training images of {args.data}, {len(val_idx)} held-out images of "
            f"{args.val or args.data}, {len(full.classes)} classes")
    return train_ds, val_ds, desc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="prepared training data (default: Imagenette)")
    p.add_argument("--val", type=Path, default=None, help="prepared held-out data (default: --val-fraction)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--train-subset", type=int, default=1000, help="stratified training images (0 = all)")
    p.add_argument("--val-subset", type=int, default=300, help="stratified held-out images (0 = all)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a TrainConfig option for every variant (e.g. --set schedule=constant)")
    p.add_argument("--ten-crop", action="store_true", help="also evaluate with the 10 crops at the end")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    common = dict(item.partition("=")[::2] for item in args.set)
    out_json = args.json or ROOT / "benchmarks" / "results" / f"recipe-{torch.device(args.device).type}.json"

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        train_ds, val_ds, desc = _data(args, Path(tmp))
        print(desc, flush=True)
        for name in names:
            what, changes = VARIANTS[name]
            for seed in seeds:
                config = TrainConfig.from_dict({
                    **changes, **common, "epochs": args.epochs, "batch_size": args.batch_size,
                    "device": args.device, "seed": seed, "ten_crop": args.ten_crop, "workers": args.workers,
                    "out": str(Path(tmp) / "runs" / f"{name}-{seed}"), "log_interval": 10_000,
                    **({} if train_ds is not None else {"data": str(args.data), "val": str(args.val)})})
                print(f"== {name} (seed {seed}): {what}", flush=True)
                t0 = time.perf_counter()
                status = "ok"
                try:
                    r = train(config, dataset=train_ds, val_dataset=val_ds, progress=True, handle_signals=False)
                    history, final = r.history, r.final
                except Exception as e:  # a variant that diverges is a result, not a crash of the benchmark
                    status, history, final = f"{type(e).__name__}: {e}", [], {}
                row = {"variant": name, "what": what, "seed": seed, "status": status,
                       "seconds": time.perf_counter() - t0, "config": config.to_dict(),
                       "history": [{k: h.get(k) for k in ("epoch", "train_loss", "train_top1_err", "val_top1_err",
                                                          "val_top5_err", "lr", "stalled")} for h in history]}
                row["final_val_top1_err"] = history[-1]["val_top1_err"] if history else None
                row["best_val_top1_err"] = min((h["val_top1_err"] for h in history), default=None)
                row["ten_crop_top1_err"] = final.get("ten_crop_top1_err")
                results.append(row)
                write_json(out_json, {"machine": machine_info(args.device), "data": desc,
                                      "budget": {"epochs": args.epochs, "batch_size": args.batch_size,
                                                 "set": common}, "results": results})

    print(f"\n{desc}; {args.epochs} epochs of batch {args.batch_size} on {args.device}")
    print(f"{'variant':24s} {'seed':>4s} {'val top-1 err per epoch':60s} final")
    for row in results:
        errs = " ".join("   -   " if h["val_top1_err"] is None or math.isnan(h["val_top1_err"])
                        else f"{100 * h['val_top1_err']:.2f}%" for h in row["history"])
        final = "n/a" if row["final_val_top1_err"] is None else f"{100 * row['final_val_top1_err']:.2f}%"
        print(f"{row['variant']:24s} {row['seed']:4d} {errs:60s} {final}"
              + ("" if row["status"] == "ok" else f"  ({row['status'][:60]})"))
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
