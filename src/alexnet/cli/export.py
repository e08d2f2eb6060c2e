"""``alexnet export``: weights to ONNX with a dynamic batch dimension."""

from __future__ import annotations

import sys

from alexnet.cli.common import output_path
from alexnet.cli.weights_args import add_weights_args, load_from_args, os_errors_as_user_errors


def register(sub) -> None:
    p = sub.add_parser("export", help="export weights to ONNX (dynamic batch)",
                       description="Export a model to ONNX. The graph takes normalised crops 'image' "
                                   "(batch, 3, C, C) and returns 'logits'. The model's metadata holds the rest: "
                                   "the input contract (alexnet.input), preprocessing, class names and, for "
                                   "weights trained with the paper's mean image, the mean image itself "
                                   "(alexnet.mean_image). Needs: pip install 'alexnet[onnx]'.")
    add_weights_args(p, device=False)
    p.add_argument("--format", choices=("onnx",), default="onnx", help="the format (only onnx; default onnx)")
    p.add_argument("--out", required=True, type=output_path(".onnx"), metavar="M.onnx", help="the file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.set_defaults(func=run)


@os_errors_as_user_errors
def run(args) -> int:
    from alexnet.weights.onnx import export_onnx

    model = load_from_args(args, device="cpu")
    out = export_onnx(model, args.out, opset=args.opset)
    meta = model.meta
    pre = meta.preprocess
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): {meta.arch}, input "
          f"(batch, 3, {pre.crop_size}, {pre.crop_size}) minus the "
          f"{'mean image (in its metadata)' if pre.uses_mean_image else 'mean per channel'}, "
          f"{model.num_classes} classes", file=sys.stderr)
    return 0
