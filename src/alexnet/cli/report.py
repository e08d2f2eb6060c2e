"""``alexnet report RUN_DIR --out report.html``: one self-contained HTML page about a training run."""

from __future__ import annotations

from alexnet.cli.common import add_device_arg, add_threads_arg, int_in, output_path, set_threads
from alexnet.runtime import resolve_device


def register(sub) -> None:
    p = sub.add_parser("report", help="a self-contained HTML report of a training run",
                       description="Write one self-contained HTML page (images embedded, nothing fetched "
                                   "from a network) about a run of 'alexnet train': its config, learning "
                                   "curves, final metrics with 1 and 10 crops, conv1 kernels, sample "
                                   "validation predictions with top-5 bars and the most confused classes.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by 'alexnet train'")
    p.add_argument("--out", default=None, type=output_path(".html", ".htm"), help="output HTML file (default RUN_DIR/report.html)")
    p.add_argument("--val", default=None, metavar="PREPARED",
                   help="validation set for metrics, predictions and confusions (default: the run's own)")
    p.add_argument("--samples", type=int_in(0), default=12, help="sample validation predictions shown (default 12)")
    p.add_argument("--max-images", type=int_in(1), default=None, metavar="N",
                   help="evaluate on at most N validation images (default: all)")
    p.add_argument("--no-ten-crop", action="store_true", help="skip the 10-crop evaluation")
    add_device_arg(p)
    add_threads_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from alexnet.experiments.report import build_report

    resolve_device(args.device)  # a one-line error now for a GPU that is not there
    set_threads(args.threads)
    out = build_report(args.run_dir, out=args.out, val=args.val, samples=args.samples,
                       max_images=args.max_images, ten_crop=not args.no_ten_crop, device=args.device)
    print(f"wrote {out}")
    return 0
