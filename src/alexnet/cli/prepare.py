"""``alexnet prepare SRC OUT``: the paper's preprocessing, done once, into a packed dataset."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from alexnet.cli.common import sigterm_interrupts
from alexnet.data.format import PARTIAL
from alexnet.data.prepare import prepare_dataset
from alexnet.progress import count

SHOW_SKIPPED = 20


def register(sub) -> None:
    p = sub.add_parser(
        "prepare", help="preprocess a labelled image collection once into a packed dataset",
        description="Decode every image, convert it to RGB, rescale it so the shorter side is SIZE and "
                    "take the central SIZExSIZE patch (the paper's preprocessing), and store the results "
                    "in packed shards with the mean image and the RGB PCA. SRC is a folder with one "
                    "sub-folder per class, a .tar/.tar.gz of one (read in place), the official ILSVRC-2012 "
                    "files (a folder holding ILSVRC2012_img_train.tar / _val.tar and "
                    "ILSVRC2012_devkit_t12.tar.gz, or one of the tars), or a flat folder of images with "
                    "--labels. Files that cannot be decoded are skipped and listed in OUT/meta.json. "
                    "Run the same command again to finish an interrupted prepare.")
    p.add_argument("src", metavar="SRC", help="the images (see above)")
    p.add_argument("out", metavar="OUT", help="folder to write the prepared dataset to")
    p.add_argument("--classes", metavar="FILE", help="class list fixing class order and names, line i = "
                   "class i: '<wnid> <name>' (synset_words.txt), '<id><TAB><name>' or one name per line; a "
                   "class folder matches a line's id, the whole line or its name")
    p.add_argument("--labels", metavar="FILE", help="label list for a flat folder: '<file> <class index>' "
                   "per line (Caffe style)")
    p.add_argument("--size", type=int, default=256, help="stored image side (default 256, the paper's)")
    p.add_argument("--warp", action="store_true", help="squash the whole image to SIZExSIZE (Caffe) instead "
                   "of rescaling the shorter side and centre-cropping")
    p.add_argument("--format", choices=("jpeg", "raw"), default="jpeg",
                   help="jpeg: compact (default); raw: uint8 pixels, fastest to read, 196 KB per image")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality 1..100 (default 90)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPUs)")
    p.add_argument("--subdir", metavar="DIR", help="use only this folder inside SRC (e.g. imagenette/train "
                   "in an archive that also holds val)")
    p.add_argument("--split", choices=("train", "val"), help="ILSVRC-2012 only (a folder holding its tars): "
                   "which split (default: train if its tar is there)")
    p.add_argument("--shard-size", type=int, default=None, help="images per shard (default: up to 1024)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset in OUT made with other "
                   "settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.set_defaults(func=run)


def _kept(out: Path) -> str:
    """What an interrupted prepare leaves for the next run (its finished shards stay until then)."""
    partial = out / PARTIAL
    if not (partial / "plan.json").is_file():
        return "no shard was finished (nothing kept); run the same command again to start over"
    done = sum(1 for p in partial.glob("[0-9]*.json"))
    return (f"{count(done, 'finished shard')} kept in {out}; run the same command again to resume "
            "(it writes only the rest)")


def run(args) -> int:
    def log(msg: str) -> None:
        print(f"alexnet prepare: {msg}", file=sys.stderr, flush=True)

    try:
        with sigterm_interrupts():  # a scheduler's stop says what is kept too
            ds = prepare_dataset(args.src, args.out, classes_file=args.classes, labels_file=args.labels,
                                 size=args.size, warp=args.warp, format=args.format, quality=args.quality,
                                 workers=args.workers, progress=not args.no_progress, subdir=args.subdir,
                                 split=args.split, shard_size=args.shard_size, overwrite=args.overwrite,
                                 log=None if args.no_progress else log)
    except KeyboardInterrupt as stop:
        name = getattr(stop, "signal", "SIGINT")
        print(f"alexnet prepare: interrupted ({name}); {_kept(Path(args.out))}", file=sys.stderr, flush=True)
        return 128 + int(getattr(signal, name, signal.SIGINT))
    meta = ds.meta
    skipped = meta["skipped"]
    for s in skipped[:SHOW_SKIPPED]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    if len(skipped) > SHOW_SKIPPED:
        print(f"... and {len(skipped) - SHOW_SKIPPED} more skipped (all listed in {args.out}/meta.json)",
              file=sys.stderr)
    mb = sum(s["bytes"] for s in meta["shards"]) / 1e6
    fmt = f"jpeg q{meta['quality']}" if meta["format"] == "jpeg" else "raw"
    present = sum(1 for c in meta["class_counts"] if c)
    again = meta.get("folders_listed_already") or []
    if again:
        print(f"left out {len(again)} folder(s) reached again through a directory symlink (listed once): "
              + ", ".join(again[:SHOW_SKIPPED]) + (" ..." if len(again) > SHOW_SKIPPED else ""), file=sys.stderr)
    # the dataset as it now is (what this run wrote and kept is on the progress lines: a resumed or
    # complete dataset was not all written now)
    print(f"prepared {args.out}: {meta['count']} images, {len(skipped)} skipped, {meta['found']} found; "
          f"{present} of {meta['num_classes']} classes present; {meta['size']}x{meta['size']} {fmt}, "
          f"{count(len(meta['shards']), 'shard')}, {mb:.1f} MB")
    return 0
