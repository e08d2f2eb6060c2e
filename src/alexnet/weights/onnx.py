"""ONNX export with a dynamic batch dimension (needs the ``onnx`` extra: onnx, onnxscript, onnxruntime).

The graph takes ``image``: float32 (batch, 3, C, C) crops *already normalised* as the weights expect
(``model.meta.preprocess``), and gives ``logits`` (batch, num_classes). Everything needed to normalise is
in the model's ``metadata_props`` (onnxruntime: ``session.get_modelmeta().custom_metadata_map``), so that
the ``.onnx`` file alone is enough:

- ``alexnet.input``: the input contract in words, with the numbers (sizes, crop rows, mean, std);
- ``alexnet.preprocess``: the weights' preprocessing as JSON (:meth:`Preprocess.to_metadata`);
- ``alexnet.mean_image``, only for weights trained with the paper's per-pixel mean: the mean image itself
  as JSON, ``{"shape": [S, S, 3], "dtype": "float32", "byte_order": "little", "layout": ..., "encoding":
  "base64", "data": ..., "center_crop": {"top", "left", "size"}}``, decoded by
  ``np.frombuffer(base64.b64decode(data), "<f4").reshape(shape)``;
- ``alexnet.classes``, ``alexnet.arch``: the class list (JSON) and the model's name.

The mean image stays out of the graph on purpose: the paper subtracts it from the whole S x S image before
cropping (section 2), so each crop takes the mean's pixels *under that crop* (the centre crop the mean's
centre crop, the ten-crop corners its corners); a graph with one crop of the mean built in would be right
for the centre crop only, and the graph's input would differ from that of every earlier export.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.files import output_file
from alexnet.models.meta import meta_of
from alexnet.weights.load import model_classes, model_preprocess
from alexnet.weights.preprocess import Preprocess, check_preprocess_metadata, crop_offsets

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
    meta = _metadata(model, pre)  # checked before the (slow) export
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


def _metadata(model: nn.Module, pre: Preprocess) -> dict[str, str]:
    """The model's ``metadata_props``: what an ONNX user needs besides the graph (module docstring)."""
    # The mean image is written into the file, so it is held to a weights file's rules first (a
    # Preprocess built by hand could carry one of another size than the squares it describes).
    check_preprocess_metadata(pre.to_metadata(), pre.mean_image if pre.uses_mean_image else None)
    meta = {
        "alexnet.arch": str(meta_of(model).arch or type(model).__name__),
        "alexnet.preprocess": json.dumps(pre.to_metadata()),
        "alexnet.classes": json.dumps(model_classes(model)),
        "alexnet.input": input_contract(pre),
    }
    if pre.uses_mean_image:
        mean = np.ascontiguousarray(pre.mean_image, dtype="<f4")  # (S, S, 3)
        (top, left), = crop_offsets(pre.resize, pre.crop_size, ten_crop=False)
        meta["alexnet.mean_image"] = json.dumps({
            "shape": list(mean.shape), "dtype": "float32", "byte_order": "little",
            "layout": "height, width, channel (RGB); 0..255 pixel units",
            "center_crop": {"top": top, "left": left, "size": pre.crop_size},
            "encoding": "base64", "data": base64.b64encode(mean.tobytes()).decode("ascii"),
        })
    return meta


def input_contract(pre: Preprocess) -> str:
    """What the graph's ``image`` input must hold, in words and numbers (``metadata_props["alexnet.input"]``)."""
    s, c = pre.resize, pre.crop_size
    (top, left), = crop_offsets(s, c, ten_crop=False)
    square = (f"the image squashed to {s}x{s} (aspect ratio not kept)" if pre.warp else
              f"the image's shorter side resized to {s} and its central {s}x{s} square kept")
    text = (f"float32 (batch, 3, {c}, {c}), channels first, RGB: {square}; its centre {c}x{c} crop (rows "
            f"{top}..{top + c - 1}, columns {left}..{left + c - 1}) in 0..255 pixel values")
    if pre.uses_mean_image:
        text += (f", minus the same crop of the {s}x{s} mean image in alexnet.mean_image (mean_image[{top}:"
                 f"{top + c}, {left}:{left + c}], channels moved first; for another crop of the square, e.g. the "
                 "paper's corner crops, subtract the mean image under that crop)")
    else:
        text += f", minus the per-channel mean_rgb {list(pre.mean_rgb)}"
    if pre.std_rgb is not None:
        text += f", divided by the per-channel std_rgb {list(pre.std_rgb)}"
    return text
