"""ONNX export with a dynamic batch dimension (needs the ``onnx`` extra: onnx, onnxscript, onnxruntime).

The graph takes ``image``: float32 (batch, 3, C, C) crops *already normalised* as the weights expect
(``model.preprocess``), and gives ``logits`` (batch, num_classes). How to normalise, the class names and
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
from alexnet.weights.load import model_classes, model_preprocess


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
    path.parent.mkdir(parents=True, exist_ok=True)
    pre = model_preprocess(model)
    model = model.eval().cpu()
    x = torch.zeros(2, 3, pre.crop_size, pre.crop_size)
    kwargs = {"opset_version": opset} if opset else {}
    # The exporter prints its progress to stdout; keep stdout for the CLI's own output.
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    try:
        with warnings.catch_warnings(), quiet:
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), dynamo=True,
                              external_data=False, verbose=verbose, **kwargs)
    except Exception as e:  # the exporter's errors are long; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"ONNX export failed: {first}") from None
    proto = onnx.load(str(path))
    meta = {
        "alexnet.arch": str(getattr(model, "model_name", type(model).__name__)),
        "alexnet.preprocess": json.dumps(pre.to_metadata()),
        "alexnet.classes": json.dumps(model_classes(model)),
        "alexnet.input": f"float32 (batch, 3, {pre.crop_size}, {pre.crop_size}) RGB, minus the mean"
                         + (" image" if pre.uses_mean_image else "") + (", divided by std" if pre.std_rgb else ""),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))
    return path
