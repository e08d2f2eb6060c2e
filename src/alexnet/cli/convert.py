"""``alexnet convert``: torchvision and Caffe weights (or any --weights kind) to our .safetensors file."""

from __future__ import annotations

import sys

from alexnet.cli.common import add_model_options_arg, parse_options
from alexnet.cli.weights_args import os_errors_as_user_errors


def register(sub) -> None:
    p = sub.add_parser("convert", help="torchvision .pth / Caffe .caffemodel weights to our .safetensors",
                       description="Convert weights to our .safetensors file (state dict plus model name, class "
                                   "names and preprocessing). Caffe files: conv1's BGR input order becomes RGB, "
                                   "227 crops of 256x256 warped images, grouped conv2/4/5 blobs checked, and "
                                   "the mean taken from --mean (imagenet_mean.binaryproto) or Caffe's [104, 117, "
                                   "123] BGR. Nothing is unpickled: .pth files holding code are refused.")
    p.add_argument("source", metavar="SRC", help="a .pth/.pt state dict or checkpoint, a .caffemodel, a "
                                                 ".safetensors file, a run directory, or 'torchvision'")
    p.add_argument("--out", required=True, metavar="W.safetensors", help="where to write our weights file")
    p.add_argument("--arch", default=None, help="the model (default: from the file; Caffe: alexnet_caffe or "
                                                "caffenet from its layer order)")
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="class names for the outputs (synset_words.txt format, WNIDs or names); default: "
                        "ImageNet's for 1000 outputs")
    p.add_argument("--mean", default=None, metavar="BINARYPROTO", help="Caffe's mean image file")
    add_model_options_arg(p)
    p.set_defaults(func=run)


@os_errors_as_user_errors
def run(args) -> int:
    from alexnet.errors import UserError
    from alexnet.weights.load import load, save_loaded

    if not str(args.out).endswith(".safetensors"):
        raise UserError(f"--out must end in .safetensors, got {args.out!r}")
    model = load(args.source, arch=args.arch, classes=args.classes, mean=args.mean,
                 **parse_options(args.model_options))
    out = save_loaded(model, args.out, extra={"converted_from": str(args.source)})
    pre = model.meta.preprocess
    print(f"wrote {out}: {model.meta.arch}, {model.num_classes} classes, input {pre.crop_size}x{pre.crop_size}, "
          f"mean {'image' if pre.uses_mean_image else [round(v, 3) for v in pre.mean_rgb]}"
          f"{', std ' + str([round(v, 3) for v in pre.std_rgb]) if pre.std_rgb else ''}", file=sys.stderr)
    return 0
