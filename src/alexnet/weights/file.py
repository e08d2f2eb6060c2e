"""The released weights file: ``.safetensors`` holding the state dict and what is needed to use it.

Metadata (all strings, as safetensors requires) under the key ``alexnet``, one JSON object:

    {"format_version": 1, "arch": "alexnet", "model_options": {...}, "num_classes": 1000,
     "classes": [{"index": 0, "wnid": "n01440764", "name": "tench"}, ...],
     "preprocess": {"resize": 256, "crop_size": 224, "mean_rgb": [r, g, b], "std_rgb": null | [..],
                    "mean": "image" | "channel", "warp": false},
     "extra": {...}}

The mean image (size x size x 3, float32, 0..255), when the weights were trained with one, is stored as
the tensor ``preprocess.mean_image`` beside the model's tensors; it is not part of the model state dict.
Loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from alexnet.errors import UserError
from alexnet.files import write_atomic
from alexnet.models.meta import meta_of

META_KEY = "alexnet"
MEAN_IMAGE_KEY = "preprocess.mean_image"
FORMAT_VERSION = 1


@dataclass
class WeightsFile:
    """What a weights file holds, model excepted."""

    arch: str
    state_dict: dict[str, torch.Tensor]
    num_classes: int
    model_options: dict = field(default_factory=dict)
    classes: list[dict] = field(default_factory=list)
    preprocess: dict = field(default_factory=dict)
    mean_image: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def build_model(self) -> nn.Module:
        """The model with these weights loaded, in eval mode."""
        from alexnet.models import create_model

        model = create_model(self.arch, num_classes=self.num_classes, **self.model_options)
        model.load_state_dict(self.state_dict)
        model.eval()
        return model


def save_weights(path: str | os.PathLike, model: nn.Module, *, arch: str | None = None,
                 model_options: dict | None = None, classes: list[dict] | None = None,
                 preprocess: dict | None = None, mean_image: np.ndarray | None = None,
                 extra: dict | None = None) -> Path:
    """Write ``model``'s weights and metadata to ``path`` (atomically: temp file + rename).

    What is not given comes from ``model.meta`` (:func:`~alexnet.models.meta.meta_of`): the arch and its
    options, and, for a model from :func:`alexnet.load` or ``alexnet.train``, its classes, preprocessing
    and mean image, so that the file rebuilds the same network. Metadata that :func:`read_weights` would
    refuse is refused here, before anything is written (:class:`~alexnet.errors.BadOptionError`)."""
    from alexnet.errors import BadOptionError

    path = Path(path)
    module = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    module = getattr(module, "module", module)  # DistributedDataParallel wrapper
    own = meta_of(module)
    arch = arch or own.arch
    if arch is None:
        raise BadOptionError("save_weights needs arch= for a model not built by create_model")
    if getattr(module, "num_classes", None) == 0:
        raise BadOptionError("save_weights: the model has no classifier (reset_classifier(0)); a weights file "
                             "holds one: give it one with reset_classifier(N) first")
    if model_options is None:
        model_options = dict(own.options or {})
    if classes is None and own.classes:
        classes = [dict(c) for c in own.classes]
    if preprocess is None and hasattr(own.preprocess, "to_metadata"):
        preprocess = own.preprocess.to_metadata()
        if mean_image is None and own.preprocess.uses_mean_image:
            mean_image = own.preprocess.mean_image
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    if mean_image is not None:
        tensors[MEAN_IMAGE_KEY] = torch.from_numpy(np.ascontiguousarray(mean_image, dtype=np.float32))
    meta = {
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "model_options": model_options or {},
        "num_classes": int(getattr(module, "num_classes", 0) or _infer_num_classes(tensors)),
        "classes": classes or [],
        "preprocess": preprocess or {},
        "extra": extra or {},
    }
    try:
        _check_metadata(meta)
    except ValueError as e:  # e.g. 1 class named for 10 outputs: a file that could not be read back
        raise BadOptionError(f"save_weights: {e}") from None
    # Serialised in memory and written by the shared atomic writer: complete or absent, the umask's
    # permissions (safetensors' save_file creates 0600), no temporary left after a failed write.
    return write_atomic(path, save(tensors, metadata={META_KEY: json.dumps(meta)}))


MAX_CLASSES = 100_000  # a model's outputs: ImageNet-21k has 21,841 classes; fc8 at 100k is 1.6 GB


def _check_metadata(meta) -> None:
    """The file-level fields of a weights file's metadata (preprocessing is checked by Preprocess)."""
    if not isinstance(meta, dict):
        raise ValueError("not a JSON object")
    if not isinstance(meta.get("arch"), str):
        raise ValueError(f"arch must be a model name, got {meta.get('arch')!r}")
    version = meta.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"format version {version!r}: this alexnet reads versions 1..{FORMAT_VERSION} "
                         "(a newer alexnet wrote it?)")
    n = meta.get("num_classes")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CLASSES:
        raise ValueError(f"num_classes must be an integer in 1..{MAX_CLASSES}, got {n!r}")
    for key, kind in (("model_options", dict), ("classes", list), ("preprocess", dict), ("extra", dict)):
        if not isinstance(meta.get(key, kind()), kind):
            raise ValueError(f"{key} must be a JSON {'object' if kind is dict else 'list'}")
    classes = meta.get("classes", [])
    if len(classes) > MAX_CLASSES or not all(isinstance(c, dict) and _text(c.get("name", ""), 1000)
                                             and (c.get("wnid") is None or _text(c["wnid"], 100)) for c in classes):
        raise ValueError("classes must be a list of objects with a name (and a wnid or null) of text")
    if "num_classes" in meta.get("model_options", {}):
        raise ValueError("model_options must not hold num_classes (it is a field of its own)")
    if classes and len(classes) != n:
        raise ValueError(f"{len(classes)} classes named for {n} outputs")


def _text(value, limit: int) -> bool:
    return isinstance(value, str) and len(value) <= limit


def _printable_classes(classes: list[dict]) -> list[dict]:
    """Class names and wnids as a terminal may show them: a character that is not printable (an escape
    sequence's ESC, a newline) becomes "?" (such names are kept, not refused: they may come from folder
    names a run was trained on)."""
    def clean(v):
        return v if not isinstance(v, str) or v.isprintable() else "".join(ch if ch.isprintable() else "?" for ch in v)

    return [{**c, "name": clean(c.get("name")), "wnid": clean(c.get("wnid"))} if any(
        isinstance(c.get(k), str) and not c[k].isprintable() for k in ("name", "wnid")) else c for c in classes]


def _infer_num_classes(tensors: dict[str, torch.Tensor]) -> int:
    last_bias = [v for k, v in tensors.items() if k.endswith("bias") and v.ndim == 1][-1]
    return int(last_bias.shape[0])


def _parsed_metadata(path: Path, raw: str) -> dict:
    try:
        meta = json.loads(raw)
        _check_metadata(meta)
    except (ValueError, UserError, RecursionError) as e:
        raise UserError(f"{path}: bad alexnet metadata: {e}") from None
    return meta


def _weights_file(meta: dict, state_dict: dict, mean: torch.Tensor | None) -> WeightsFile:
    return WeightsFile(
        arch=meta["arch"], state_dict=state_dict, num_classes=int(meta["num_classes"]),
        model_options=meta.get("model_options", {}), classes=_printable_classes(meta.get("classes", [])),
        preprocess=meta.get("preprocess", {}), mean_image=None if mean is None else mean.float().numpy(),
        extra=meta.get("extra", {}))


def read_weights(path: str | os.PathLike) -> WeightsFile:
    """Read one of our ``.safetensors`` weights files; a bad or foreign file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({e})") from None
    if raw is None:
        raise UserError(f"{path}: safetensors file without alexnet metadata; use 'alexnet convert' first")
    meta = _parsed_metadata(path, raw)
    return _weights_file(meta, tensors, tensors.pop(MEAN_IMAGE_KEY, None))


FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names of the dtypes weights may have (and F8_*)


def read_weights_header(path: str | os.PathLike) -> tuple[WeightsFile, dict[str, tuple[int, ...]]] | None:
    """One of our ``.safetensors`` files without its model tensors (``alexnet info``): the
    :class:`WeightsFile` with an empty ``state_dict`` (its metadata checked as :func:`read_weights` does, and
    the mean image, which is small) and the tensors' shapes; None for a safetensors file without our
    metadata. A tensor that is not floating point, or a mean image larger than an image, is a UserError."""
    from safetensors import safe_open

    from alexnet.weights.preprocess import MAX_RESIZE

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
            if raw is None:
                return None
            slices = {k: f.get_slice(k) for k in f.keys()}
            shapes = {k: tuple(v.get_shape()) for k, v in slices.items()}
            dtypes = {k: v.get_dtype() for k, v in slices.items()}
            mean = None
            if MEAN_IMAGE_KEY in shapes:
                size = int(np.prod(shapes[MEAN_IMAGE_KEY], dtype=object))
                if size > 3 * MAX_RESIZE ** 2 or dtypes[MEAN_IMAGE_KEY] not in FLOAT_DTYPES:
                    raise UserError(f"{path}: weights metadata: the mean image is {dtypes[MEAN_IMAGE_KEY]} "
                                    f"{'x'.join(map(str, shapes[MEAN_IMAGE_KEY]))}, not an image")
                mean = f.get_tensor(MEAN_IMAGE_KEY)
    except UserError:
        raise
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0] if str(e) else e!r})") \
            from None
    meta = _parsed_metadata(path, raw)
    odd = next((k for k, d in dtypes.items() if d not in FLOAT_DTYPES and not d.startswith("F8")), None)
    if odd is not None:
        raise UserError(f"{path}: tensor {odd[:60]!r} holds {dtypes[odd]} values, not floating-point weights")
    shapes.pop(MEAN_IMAGE_KEY, None)
    return _weights_file(meta, {}, mean), shapes
