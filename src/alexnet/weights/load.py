"""``alexnet.load(W)``: any kind of weights to a ready model that knows its classes and preprocessing.

``W`` may be:

- ``"torchvision"`` (or another name in :data:`~alexnet.weights.records.RECORDS`): published weights,
  downloaded once through torch.hub;
- a ``.safetensors`` file: ours (``save_weights``, with metadata), or a bare state dict (e.g. torchvision's
  re-saved) whose model is guessed from its tensor names or given with ``arch=``;
- a ``.pth``/``.pt`` file: a torchvision-style state dict, or a training checkpoint (a dict holding the
  state dict under ``"model"`` and its config beside it), read with ``weights_only=True``;
- a ``.caffemodel``: Caffe's bvlc_alexnet / bvlc_reference_caffenet (optionally ``mean=`` its
  ``.binaryproto`` mean image);
- a run directory of ``alexnet train``: its final weights (``*.safetensors``), else its best or last
  checkpoint.

The model comes back in eval mode with ``model.meta`` (:class:`~alexnet.models.ModelMeta`) filled in:

- ``meta.arch`` and ``meta.options``: the registered model and its options;
- ``meta.classes``: ``[{"index", "wnid", "name"}, ...]`` (ImageNet's for a 1000-class model without names);
- ``meta.preprocess``: a :class:`~alexnet.weights.preprocess.Preprocess` (``model.meta.preprocess(image)``
  gives the normalised (3, C, C) centre crop);
- ``meta.source``: where the weights came from (a string).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from alexnet import models
from alexnet.errors import BadOptionError, UserError
from alexnet.models import ModelMeta, meta_of, model_info
from alexnet.models.meta import unwrap
from alexnet.untrusted import repeats_one_value
from alexnet.weights.classes import read_class_file
from alexnet.weights.file import WeightsFile, read_weights
from alexnet.weights.preprocess import IMAGENET_STD_RGB, Preprocess

# Names ``alexnet train`` may give its final weights / checkpoints, most preferred first.
_RUN_WEIGHTS = ("weights.safetensors", "final.safetensors", "model.safetensors", "best.safetensors",
                "last.safetensors")
_RUN_CHECKPOINTS = ("best.pt", "best.pth", "last.pt", "last.pth", "checkpoint.pt")
_TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar")


def resolve_run_dir(path: Path) -> Path:
    """The weights file a run directory stands for: its final ``.safetensors``, else the newest one, else
    ``best.pt`` / ``last.pt`` (also in a ``checkpoints/`` or ``ckpt/`` folder); else a UserError."""
    for name in _RUN_WEIGHTS:
        if (path / name).is_file():
            return path / name
    found = sorted(path.glob("*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True)
    if found:
        return found[0]
    for name in _RUN_CHECKPOINTS:
        if (path / name).is_file():
            return path / name
    for sub in ("checkpoints", "ckpt"):
        if (path / sub).is_dir():
            return resolve_run_dir(path / sub)
    raise UserError(f"{path}: a directory without weights (*.safetensors) or checkpoints (best.pt, last.pt)")


def _read_safetensors(path: Path, arch: str | None, model_options: dict | None) -> WeightsFile:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            has_meta = "alexnet" in (f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for foreign files
        raise UserError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    if has_meta:
        return read_weights(path)
    # A bare state dict in safetensors (e.g. torchvision's weights re-saved): like a .pth file.
    from safetensors.torch import load_file

    from alexnet.weights.torchfile import state_dict_to_weights

    return state_dict_to_weights(load_file(str(path)), arch=arch, model_options=model_options, source=str(path))


def resolve_weights(source: str | os.PathLike | WeightsFile, *, arch: str | None = None,
                    classes: list[dict] | str | os.PathLike | None = None, mean: str | os.PathLike | None = None,
                    model_options: dict | None = None, progress: bool = True) -> WeightsFile:
    """Read weights of any supported kind (see the module docstring) as a :class:`WeightsFile`.

    ``arch`` / ``model_options``: the model, for files that do not record it (or to check that they do);
    ``classes``: a class list (or a class file: synset_words format, WNIDs or names) overriding the file's;
    ``mean``: Caffe's ``.binaryproto`` mean image for a ``.caffemodel``.
    """
    if isinstance(classes, (str, os.PathLike)):
        classes = read_class_file(classes)
    if isinstance(source, WeightsFile):
        wf = source
    else:
        text = os.fspath(source)
        path = Path(text)
        from alexnet.weights.records import RECORDS

        if text in RECORDS and not path.exists():
            record = RECORDS[text]
            if arch is not None and arch != record.arch:
                raise UserError(f"the {text} weights are for {record.arch}, not {arch}")
            wf = record.to_weights(progress=progress)
        else:
            if path.is_dir():
                path = resolve_run_dir(path)
            if not path.is_file():
                raise UserError(f"weights not found: {path} (a file, a run directory, or one of: "
                                f"{', '.join(sorted(RECORDS))})")
            suffix = path.suffix.lower()
            if suffix == ".safetensors":
                wf = _read_safetensors(path, arch, model_options)
            elif suffix == ".caffemodel":
                from alexnet.weights.caffe import caffe_to_weights, read_caffemodel, read_mean_binaryproto

                mean_image = read_mean_binaryproto(mean) if mean is not None else None
                wf = caffe_to_weights(read_caffemodel(path), arch=arch, mean_image=mean_image, source=str(path))
            elif suffix in _TORCH_SUFFIXES or suffix == "":
                from alexnet.weights.torchfile import state_dict_to_weights, torch_load_safe

                wf = state_dict_to_weights(torch_load_safe(path), arch=arch, model_options=model_options,
                                           source=str(path))
            else:
                raise UserError(f"{path}: unknown weights format {suffix!r} (expected .safetensors, .pth/.pt, "
                                ".caffemodel or a run directory)")
    if mean is not None and not str(source).lower().endswith(".caffemodel"):
        raise UserError("--mean (a Caffe .binaryproto) only applies to .caffemodel weights")
    if arch is not None and wf.arch != arch:
        raise UserError(f"the weights are for {wf.arch}, not {arch}")
    if model_options:
        wf.model_options = {**wf.model_options, **model_options}
    if classes is not None:
        if len(classes) != wf.num_classes:
            raise UserError(f"{len(classes)} class names given for a model with {wf.num_classes} outputs")
        # class dicts, or plain names (a list of str)
        wf.classes = [{**c, "index": i} if isinstance(c, dict) else {"index": i, "wnid": str(c), "name": str(c)}
                      for i, c in enumerate(classes)]
    _check_class_count(wf, source)
    _check_tensors(wf, source)
    return wf


def _check_class_count(wf: WeightsFile, source) -> None:
    """The class count against the tensors, before the model is built: a file of a few bytes that declares
    a million (or 50,000) classes is refused before a classifier that size is allocated; the other shapes
    are checked when the weights are loaded into the model (:func:`build`). (Not by building the model on
    the meta device: its first use imports about 900 modules, a second on every load, and made torchrun
    processes abort at exit.)"""
    from alexnet.weights.file import MAX_CLASSES

    where = source if not isinstance(source, WeightsFile) else "the weights"
    n = wf.num_classes
    if not 1 <= n <= MAX_CLASSES:
        raise UserError(f"{where}: {n} classes: at most {MAX_CLASSES:,} are read")
    outputs = {int(t.shape[0]) for k, t in wf.state_dict.items() if k.endswith("bias") and t.dim() == 1}
    if outputs and n not in outputs:
        raise UserError(f"{where}: the weights do not fit {wf.arch} with {n} classes: no layer of them has "
                        f"{n} outputs")


def _check_tensors(wf: WeightsFile, source) -> None:
    """Weights are floating-point numbers, all finite: an integer tensor would be cast into the model
    silently, and a NaN makes every prediction NaN (a diverged run's weights, or a damaged file)."""
    where = source if not isinstance(source, WeightsFile) else "the weights"
    for name, t in wf.state_dict.items():
        if repeats_one_value(t):  # checking its values would allocate the whole extent the file declares
            raise UserError(f"{where}: tensor {name} repeats one stored value along a dimension (stride 0): "
                            "not trained weights")
        if not t.is_floating_point():
            raise UserError(f"{where}: tensor {name} holds {str(t.dtype).replace('torch.', '')} values, not "
                            "floating-point weights")
        if not bool(torch.isfinite(t).all()):
            raise UserError(f"{where}: tensor {name} holds NaN or infinite values")


def preprocess_of(wf: WeightsFile) -> Preprocess:
    """The weights' preprocessing, with the model's defaults for whatever the metadata leaves out."""
    info = model_info(wf.arch)
    return Preprocess.from_metadata(wf.preprocess, wf.mean_image, crop_size=info.input_size,
                                    pixel_std=info.pixel_std)


def attach(model: nn.Module, wf: WeightsFile, source: str) -> nn.Module:
    """Fill in ``model.meta`` of a model built from ``wf``: options, classes, preprocessing, source."""
    model.meta = ModelMeta(arch=wf.arch, options=dict(wf.model_options), classes=list(wf.classes),
                           preprocess=preprocess_of(wf), source=source)
    return model


def build(wf: WeightsFile) -> nn.Module:
    try:
        return wf.build_model()
    except RuntimeError as e:  # load_state_dict: missing/unexpected keys or shapes
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise UserError(f"the weights do not fit {wf.arch} {wf.model_options or ''}: "
                        f"{lines[1] if len(lines) > 1 else lines[0]}") from None


def load(source: str | os.PathLike, *, arch: str | None = None,
         classes: list[dict] | str | os.PathLike | None = None, mean: str | os.PathLike | None = None,
         device: str | torch.device = "cpu", progress: bool = True, **model_options) -> nn.Module:
    """A ready model from weights of any supported kind (see :mod:`alexnet.weights.load`), in eval mode
    on ``device``, with ``model.meta`` (classes, preprocessing, source) filled in."""
    from alexnet.runtime import resolve_device

    if "num_classes" in model_options:
        raise BadOptionError("load takes the number of classes from the weights; for another one, load them "
                             "and call model.reset_classifier(num_classes)")
    device = resolve_device(str(device))  # "gpu" or a GPU that is not there: one line, before any reading
    wf = resolve_weights(source, arch=arch, classes=classes, mean=mean, model_options=model_options or None,
                         progress=progress)
    model = build(wf).to(device)
    return attach(model, wf, os.fspath(source) if not isinstance(source, WeightsFile) else "<WeightsFile>")


def model_classes(model: nn.Module) -> list[dict]:
    """A model's class list (``model.meta.classes``), else placeholders for its outputs."""
    from alexnet.weights.classes import default_classes

    classes = meta_of(model).classes
    if classes:
        return classes
    return default_classes(int(getattr(model, "num_classes", 0) or 1000))


def model_preprocess(model: nn.Module) -> Preprocess:
    """A model's preprocessing (``model.meta.preprocess``), else its registered model's defaults
    (ImageNet's mean, the model's input size and std); for one of our nets built without
    :func:`create_model` its class's; for a torchvision model torchvision's (ImageNet's mean and std, 224
    crops); for any other model ImageNet's mean and 224 crops, with a warning."""
    meta = meta_of(model)
    if isinstance(meta.preprocess, Preprocess):
        return meta.preprocess
    if meta.arch is None:
        from alexnet.models.layers import ClassifierHead

        inner = unwrap(model)
        if isinstance(inner, ClassifierHead):
            return Preprocess(crop_size=inner.input_size, std_rgb=inner.pixel_std)
        if type(inner).__module__.startswith("torchvision."):
            return Preprocess(std_rgb=IMAGENET_STD_RGB)
        warnings.warn(f"{type(inner).__name__} has no model.meta.preprocess: its images are preprocessed as "
                      "ImageNet's (shorter side 256, centre 224 crop, ImageNet's mean subtracted, no std); "
                      "set model.meta = alexnet.models.ModelMeta(preprocess=alexnet.weights.Preprocess(...)) "
                      "for others", stacklevel=3)
        return Preprocess()
    info = model_info(meta.arch)
    return Preprocess(crop_size=info.input_size, std_rgb=info.pixel_std)


def save_loaded(model: nn.Module, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write a model from :func:`load` as our ``.safetensors`` (classes, preprocessing and mean kept)."""
    from alexnet.weights.file import save_weights

    pre, meta = model_preprocess(model), meta_of(model)
    return save_weights(path, model, arch=meta.arch, model_options=meta.options, classes=model_classes(model),
                        preprocess=pre.to_metadata(), mean_image=pre.mean_image if pre.uses_mean_image else None,
                        extra=extra)


def create_model(name: str, num_classes: int | None = None, *, pretrained: bool = False, weights=None,
                 progress: bool = True, **options) -> nn.Module:
    """``alexnet.create_model``: a registered model, freshly initialised (:func:`alexnet.models.create_model`),
    or with weights loaded, then in eval mode with ``model.meta`` filled in:

    - ``pretrained=True`` (timm's way), ``weights="DEFAULT"`` or a torchvision weights enum
      (``AlexNet_Weights.IMAGENET1K_V1``; torchvision's ways): the model's published weights (``alexnet_owt``:
      torchvision's, downloaded once); a model without any is refused;
    - ``weights``: a published record name (``"torchvision"``) or anything :func:`load` accepts (weights
      file, checkpoint, run directory).

    ``num_classes`` must then be the weights' (to fine-tune: load, then ``model.reset_classifier(n)``)."""
    if not isinstance(pretrained, bool):
        raise BadOptionError(f"pretrained must be True or False, got {pretrained!r}")
    if pretrained and weights is not None:
        raise BadOptionError(f"{name}: pass pretrained=True or weights=..., not both")
    if pretrained or (isinstance(weights, str) and weights == "DEFAULT"):
        weights = published_weights(name)
    weights = _record_of_enum(name, weights)
    if weights is None:
        return models.create_model(name, num_classes, **options)
    model = load(weights, arch=name, progress=progress, **options)
    if num_classes is not None and num_classes != model.num_classes:
        raise BadOptionError(f"the weights have {model.num_classes} classes, not num_classes={num_classes} (to "
                             f"fine-tune: load them, then model.reset_classifier({num_classes}))")
    return model


def published_weights(name: str) -> str:
    """The name of model ``name``'s published weights record, else a UserError."""
    from alexnet.weights.records import RECORDS

    models.model_info(name)  # an unknown model: its own error first
    for record in RECORDS.values():
        if record.arch == name:
            return record.name
    raise UserError(f"there are no published weights for {name}; pass weights=PATH (a weights file, "
                    "checkpoint or run directory)")


def _record_of_enum(name: str, weights):
    """A torchvision weights enum (``AlexNet_Weights.IMAGENET1K_V1``: it has a ``url``) as our record's name."""
    url = getattr(weights, "url", None)
    if weights is None or isinstance(weights, (str, os.PathLike, WeightsFile)) or not isinstance(url, str):
        return weights
    from alexnet.weights.records import RECORDS

    for record in RECORDS.values():
        if record.url == url and record.arch == name:
            return record.name
    raise UserError(f"unknown weights {_short(weights)} for {name}; pass weights=PATH or a published name "
                    f"({', '.join(sorted({r.name for r in RECORDS.values()}))})")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["attach", "build", "create_model", "load", "model_classes", "model_preprocess", "preprocess_of", "resolve_weights",
           "save_loaded"]
