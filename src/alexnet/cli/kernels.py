"""``alexnet kernels``: conv1's kernels as a picture (the paper's Figure 3)."""

from __future__ import annotations

import sys

from alexnet.cli.common import IMAGE_SUFFIXES, int_in, output_path
from alexnet.cli.weights_args import add_weights_args, load_from_args, os_errors_as_user_errors


def register(sub) -> None:
    p = sub.add_parser("kernels", help="draw conv1's kernels (the paper's Figure 3)",
                       description="Draw the first layer's kernels as a grid; for the paper's two-tower net "
                                   "as two blocks of 48, one per tower (GPU).")
    add_weights_args(p, device=False)
    p.add_argument("--out", required=True, type=output_path(*IMAGE_SUFFIXES), metavar="OUT.png", help="the figure (.png, .jpg, .pdf or .svg)")
    p.add_argument("--scale", choices=("kernel", "global"), default="kernel",
                   help="stretch each kernel to full contrast (default; faint kernels look as vivid as "
                        "strong ones) or use one scale for all (0 = grey: shows their relative strength)")
    p.add_argument("--columns", type=int_in(1), default=16, help="kernels per row (default 16)")
    p.add_argument("--title", default=None, help="the figure's title (default: the weights' name, the model, "
                                                 "the kernels' shape and the contrast; '' for none)")
    p.set_defaults(func=run)


@os_errors_as_user_errors
def run(args) -> int:
    from alexnet.inspect.kernels import FAINT, faint_kernels, plot_kernels

    model = load_from_args(args, device="cpu")
    out = plot_kernels(model, args.out, scale=args.scale, columns=args.columns, title=args.title)
    print(f"wrote {out}", file=sys.stderr)
    faint, n = faint_kernels(model)
    if args.scale == "kernel" and 2 * faint >= n:
        # Stretched one by one, near-flat kernels look like strong colour blobs; say so when they are most
        # of the picture (a net killed by too high an lr looks like this; measurements at faint_kernels).
        print(f"note: {faint} of {n} kernels are nearly flat (their weights span under {FAINT:.0%} of -m..m, m "
              "the largest |weight|) and look vivid only because each is stretched to its own range; "
              "--scale global draws all to one scale", file=sys.stderr)
    return 0
