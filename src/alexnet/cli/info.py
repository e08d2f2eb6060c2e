"""``alexnet info``: a per-layer table of output shape, parameters and multiply-accumulates; or, given a
weights file or run directory, what the weights are (model, classes, preprocessing, training record)."""

from __future__ import annotations

from pathlib import Path

import torch

from alexnet.cli.common import add_model_options_arg, format_table, int_in, parse_options
from alexnet.errors import BadOptionError, UnknownModelError, UserError
from alexnet.models import count_parameters, create_model, list_models, model_info, summarize
from alexnet.weights.file import MAX_CLASSES

SHOWN_CLASSES = 5  # class names printed for a weights file
WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".caffemodel")


def register(sub) -> None:
    p = sub.add_parser("info", help="per-layer shapes, parameters and MACs of a model; or what a weights "
                                    "file holds",
                       description="Print a per-layer table of output shape, parameters and "
                                   "multiply-accumulates per image, with totals. Given a weights file or run "
                                   "directory instead of a model name: its model and options, classes, "
                                   "preprocessing, training record and parameter count (the tensors of our "
                                   ".safetensors files are not read).")
    p.add_argument("name", nargs="?", metavar="ARCH|WEIGHTS",
                   help="registered model name (see 'alexnet models'; the same as --arch), or a weights file "
                        "(.safetensors, .pth/.pt, .caffemodel) or run directory (a registered name wins: "
                        "write ./NAME for a folder of that name)")
    p.add_argument("--arch", default=None, help="registered model name (default alexnet); with weights: the "
                                                "model, for files that do not record it")
    p.add_argument("--input-size", type=int_in(1), default=None, help="square input size (default: the model's)")
    p.add_argument("--num-classes", type=int_in(1, MAX_CLASSES), default=None, help="output classes (default: the model's)")
    add_model_options_arg(p)
    p.set_defaults(func=run)


def _is_weights_path(name: str | None) -> bool:
    """An existing file or folder, unless it is a bare registered model name (``alexnet info alexnet`` in
    a folder holding an ``alexnet`` directory still means the model)."""
    if not name or not Path(name).exists():
        return False
    return name not in list_models()


def run(args) -> int:
    if _is_weights_path(args.name):
        return run_weights(args)
    if args.name and args.arch and args.name != args.arch:
        raise BadOptionError(f"two models named: {args.name} and --arch {args.arch}")
    args.arch = args.name or args.arch or "alexnet"
    try:
        info = model_info(args.arch)
    except UnknownModelError as e:
        if args.name and ("/" in args.name or Path(args.name).suffix.lower() in WEIGHTS_SUFFIXES):
            raise UnknownModelError(f"{e}; nor is there a weights file or run directory of that name") from None
        raise
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


# --- a weights file ----------------------------------------------------------------------------------


def _printable(text, limit: int = 120) -> str:
    """Untrusted text from a file, safe to print on one terminal line: control characters (escape
    sequences, newlines) shown as '?', at most ``limit`` characters."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_fits(wf, shapes: dict[str, tuple], where: str) -> int:
    """The registered model the weights name, built on the meta device (no memory, no init), must have
    exactly these tensors; returns its parameter count."""
    try:
        model_info(wf.arch)
        with torch.device("meta"):
            model = create_model(wf.arch, num_classes=wf.num_classes, **wf.model_options)
    except (UserError, TypeError) as e:
        raise UserError(f"{where}: {_printable(e, 300)}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    for what, keys in (("lack", missing), ("have unexpected tensors", unexpected)):
        if keys:
            raise UserError(f"{where}: the weights do not fit {wf.arch}: they {what} "
                            f"{', '.join(_printable(k, 60) for k in keys[:3])}{', ...' if len(keys) > 3 else ''}")
    if wrong:
        k = wrong[0]
        raise UserError(f"{where}: the weights do not fit {wf.arch}: {k} is {'x'.join(map(str, shapes[k]))}, "
                        f"the model's {'x'.join(map(str, expected[k]))}")
    return count_parameters(model)


def _error_name(key: str) -> str:
    """``ten_crop_top1_err`` -> ``10-crop top-1``."""
    name = _printable(key.removesuffix("_err"), 40).replace("_", " ")
    return name.replace("top1", "top-1").replace("top5", "top-5").replace("ten crop", "10-crop")


def _training_rows(extra: dict) -> list[tuple[str, str]]:
    """The training record of ``alexnet train``'s weights or checkpoints, and where converted weights came
    from: only plain numbers and printable text of the (untrusted) metadata."""
    def number(key):
        v = extra.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None

    def rate(key):
        v = extra.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 else None

    parts = [_printable(extra["trained_by"], 60)] if isinstance(extra.get("trained_by"), str) else []
    for key, noun in (("epochs", "epoch"), ("steps", "step"), ("batches_into_epoch", "batch")):
        if number(key) is not None:
            n = number(key)
            parts.append(f"{n:,} {noun if n == 1 else noun + ('es' if noun == 'batch' else 's')}"
                         + (" into the next" if key == "batches_into_epoch" else ""))
    order = ("val_", "ten_crop_", "train_", "best_")
    keys = sorted((k for k in extra if isinstance(k, str) and k.endswith("_err") and rate(k) is not None),
                  key=lambda k: (next((i for i, p in enumerate(order) if k.startswith(p)), len(order)), k))
    errors = [f"{_error_name(k)} {100 * rate(k):.2f}%" for k in keys]
    rows = [("training", ", ".join(parts))] if parts else []
    rows += [("errors", ", ".join(errors))] if errors else []
    if isinstance(extra.get("converted_from"), str) and extra["converted_from"] != "pytorch":
        rows.append(("converted from", _printable(extra["converted_from"])))
    return rows


def run_weights(args) -> int:
    from alexnet.weights.file import read_weights_header
    from alexnet.weights.load import preprocess_of, resolve_run_dir, resolve_weights

    if args.input_size is not None or args.num_classes is not None:
        raise BadOptionError("--input-size and --num-classes are for a model name; weights record their own")
    path = Path(args.name)
    file = resolve_run_dir(path) if path.is_dir() else path
    options = parse_options(args.model_options)
    header = read_weights_header(file) if file.suffix.lower() == ".safetensors" else None
    if header is not None:
        wf, shapes = header
        if args.arch is not None and wf.arch != args.arch:
            raise UserError(f"{file}: the weights are for {_printable(wf.arch, 60)}, not {args.arch}")
        if options:
            wf.model_options = {**wf.model_options, **options}
        kind = "alexnet weights file"
    else:  # a .pth/.pt, .caffemodel or bare safetensors: read whole, as predict would
        wf = resolve_weights(file, arch=args.arch, model_options=options or None, progress=False)
        shapes = {k: tuple(v.shape) for k, v in wf.state_dict.items()}
        if file.suffix.lower() == ".caffemodel":
            kind = "Caffe model: classes ImageNet's, preprocessing Caffe's"
        elif str(wf.extra.get("trained_by", "")).startswith("alexnet train"):
            kind = "training checkpoint"
        else:
            kind = "state dict without alexnet metadata: model, classes and preprocessing inferred"
        wf.extra.pop("converted_from", None)  # the reader's note ("pytorch", "caffe"), not the file's
    params = _check_fits(wf, shapes, str(file))
    pre = preprocess_of(wf)  # the preprocessing metadata's checks (sizes, finite numbers, mean image)

    names = [_printable(c.get("name", ""), 40) for c in wf.classes[:SHOWN_CLASSES]]
    classes = f"{wf.num_classes:,}" + (f": {'; '.join(names)}{'; ...' if wf.num_classes > len(names) else ''}"
                                       if any(names) else "")
    options_text = ", ".join(f"{_printable(k, 40)}={_printable(v, 40)}" for k, v in sorted(wf.model_options.items()))
    if pre.uses_mean_image:
        mean = f"mean image ({pre.resize}x{pre.resize}, per-channel {[round(v, 1) for v in pre.mean_rgb]})"
    else:
        mean = f"per-channel mean {[round(v, 2) for v in pre.mean_rgb]}"
    std = f", std {[round(v, 2) for v in pre.std_rgb]}" if pre.std_rgb else ", no std"
    resize = f"warp to {pre.resize}x{pre.resize}" if pre.warp else f"shorter side {pre.resize}, centre square"
    rows = [("weights", f"{file} ({kind})"),
            ("model", wf.arch + (f" ({options_text})" if options_text else "")),
            ("classes", classes),
            ("preprocess", f"{resize}, crop {pre.crop_size}, {mean}{std}"),
            *_training_rows(wf.extra),
            ("parameters", f"{params:,}")]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return 0
