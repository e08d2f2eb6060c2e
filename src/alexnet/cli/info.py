"""``alexnet info``: a per-layer table of output shape, parameters and multiply-accumulates."""

from __future__ import annotations

from alexnet.cli.common import MAX_CLASSES, add_model_options_arg, format_table, int_in, parse_options
from alexnet.errors import BadOptionError
from alexnet.models import count_parameters, create_model, model_info, summarize


def register(sub) -> None:
    p = sub.add_parser("info", help="per-layer shapes, parameters and MACs of a model",
                       description="Print a per-layer table of output shape, parameters and "
                                   "multiply-accumulates per image, with totals.")
    p.add_argument("name", nargs="?", metavar="ARCH", help="registered model name (see 'alexnet models'); "
                   "the same as --arch")
    p.add_argument("--arch", default=None, help="registered model name (default alexnet)")
    p.add_argument("--input-size", type=int_in(1), default=None, help="square input size (default: the model's)")
    p.add_argument("--num-classes", type=int_in(1, MAX_CLASSES), default=None, help="output classes (default: the model's)")
    add_model_options_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.name and args.arch and args.name != args.arch:
        raise BadOptionError(f"two models named: {args.name} and --arch {args.arch}")
    args.arch = args.name or args.arch or "alexnet"
    info = model_info(args.arch)
    size = args.input_size or info.input_size
    model = create_model(args.arch, num_classes=args.num_classes, **parse_options(args.model_options))
    try:
        rows = summarize(model, size)
    except RuntimeError as e:  # e.g. an input too small for the layers
        raise BadOptionError(f"input size {size} does not fit {args.arch}: {str(e).splitlines()[0]}") from None
    total_params = count_parameters(model)
    total_macs = sum(r.macs for r in rows)
    table = [[r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.params:,}",
              f"{r.macs:,}" if r.macs else "-"] for r in rows]
    table.append(["total", "", "", f"{total_params:,}", f"{total_macs:,}"])
    print(f"{args.arch}: input 3x{size}x{size}, {model.num_classes} classes")
    print(format_table(["layer", "type", "output", "params", "MACs/image"], table, align="llrrr"))
    print(f"{total_params:,} parameters, {total_macs / 1e9:.3f} GMAC per image forward")
    return 0
