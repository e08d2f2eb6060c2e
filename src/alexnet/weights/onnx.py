"""ONNX export with a dynamic batch dimension (needs the ``onnx`` extra: onnx, onnxscript, onnxruntime).

The graph takes ``image``: float32 (batch, 3, C, C) crops *already normalised* as the weights expect
(``model.meta.preprocess``), and gives ``logits`` (batch, num_classes). How to normalise, the class names and
the input size are written into the model's metadata (``metadata_props``: ``alexnet.preprocess``,
``alexnet.classes``, ``alexnet.arch``) so that an ONNX user needs nothing else.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.files import output_file
from alexnet.models.meta import meta_of
from alexnet.weights.load import model_classes, model_preprocess

MIN_OPSET = 18  # torch's dynamo exporter writes opset 18 and later


def _write_proto(proto, path: Path) -> None:
    import onnx

    onnx.save(proto, str(path))


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserError("ONNX export needs the onnx extra: pip install 'alexnet[onnx]'") from None


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int | None = None,
                verbose: bool = False) -> Path:
    """Export ``model`` (eval mode, on the CPU) to ``path``; the batch dimension is dynamic."""
    _require_onnx()
    import onnx

    path = Path(path)
    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= opset <= newest:
        raise UserError(f"--opset must be {MIN_OPSET}..{newest} (what torch's exporter and the installed onnx "
                        f"support), got {opset}")
    path = output_file(path)
    # Written under a temporary name and renamed when complete: a full disk or a failed export never
    # leaves a truncated file at the path asked for.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        return _export(model, path, tmp, opset, verbose)
    finally:
        tmp.unlink(missing_ok=True)


def _export(model: nn.Module, path: Path, tmp: Path, opset: int | None, verbose: bool) -> Path:
    import onnx

    pre = model_preprocess(model)
    model = model.eval().cpu()
    x = torch.zeros(2, 3, pre.crop_size, pre.crop_size)
    kwargs = {"opset_version": opset} if opset else {}
    # The exporter prints its progress to stdout; keep stdout for the CLI's own output.
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    try:
        with warnings.catch_warnings(), quiet:
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(tmp), input_names=["image"], output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), dynamo=True,
                              external_data=False, verbose=verbose, **kwargs)
    except Exception as e:  # the exporter's errors are long; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"ONNX export failed: {first}") from None
    proto = onnx.load(str(tmp))
    meta = {
        "alexnet.arch": str(meta_of(model).arch or type(model).__name__),
        "alexnet.preprocess": json.dumps(pre.to_metadata()),
        "alexnet.classes": json.dumps(model_classes(model)),
        "alexnet.input": f"float32 (batch, 3, {pre.crop_size}, {pre.crop_size}) RGB, minus the mean"
                         + (" image" if pre.uses_mean_image else "") + (", divided by std" if pre.std_rgb else ""),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    try:
        _write_proto(proto, tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    return path
