"""PyTorch files (``.pth``/``.pt``): torchvision state dicts and our training checkpoints, read safely.

Never unpickles code: ``torch.load(..., weights_only=True)`` only accepts tensors and plain containers
and primitives; a file that holds anything else (a pickled class, a ``__reduce__`` that runs a command)
is refused with a :class:`UserError` before any of it runs.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from alexnet.errors import UserError
from alexnet.models import create_model, model_info
from alexnet.weights.classes import default_classes
from alexnet.weights.file import WeightsFile
from alexnet.weights.preprocess import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB


class UnsafeFileError(UserError):
    """A PyTorch file holding Python objects that would have to be unpickled (and could run code)."""


def torch_load_safe(path: str | os.PathLike, what: str = "PyTorch file"):
    """``torch.load(path, weights_only=True)`` on the CPU with one-line errors (``what`` names the file in
    them). A file holding pickled objects is refused as unsafe, never with torch's advice to load it with
    ``weights_only=False``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    if _looks_like_safetensors(path):
        raise UserError(f"{path} is a safetensors file, not a {what}: name it .safetensors")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).strip().splitlines()
        if any("Weights only load failed" in line or "Unsupported global" in line for line in lines):
            raise UnsafeFileError(_refusal(path, lines)) from None
        raise UserError(f"{path}: not a readable {what} ({lines[0] if lines else 'bad pickle'})") from None
    except Exception as e:  # noqa: BLE001  (torch.load raises anything on a damaged file: its fault, not ours)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if len(msg) < 16:  # "101" (the key of a KeyError inside torch.load) tells a user nothing
            msg = "torch.load cannot read it"
        raise UserError(f"{path}: not a readable {what} ({msg[:200]})") from None


def _refusal(path: Path, lines: list[str]) -> str:
    """The one-line refusal of a file holding pickled objects, naming the first one and saying what a user
    can do. torch's own advice (``torch.serialization.add_safe_globals``, ``weights_only=False``) is left
    out: a CLI user cannot act on it, and following it would run the file's code."""
    detail = " ".join(lines)
    found = re.search(r"GLOBAL ([\w.]+)", detail)
    if found:
        what = f"a pickled {found.group(1)}"
    else:  # another construct the safe unpickler refuses, e.g. an opcode it does not take
        reason = re.search(r"WeightsUnpickler error: ([^.`]*)", detail)
        what = f"pickled Python objects{' (' + reason.group(1).strip() + ')' if reason else ''}"
    return (f"{path}: refusing to load {what}: only tensors are read, since unpickling objects could run code. "
            "If the file is a whole model saved with torch.save(model), re-save its weights in the Python that "
            "made it: torch.save(model.state_dict(), \"weights.pth\"), and give that file")


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors' layout: an 8-byte little-endian header length, then the JSON header (``{``)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= path.stat().st_size - 8


def _strip_prefixes(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "_orig_mod."):  # DDP and torch.compile wrappers
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def guess_arch(state_dict: dict[str, torch.Tensor]) -> tuple[str, dict]:
    """(arch, model options) from a state dict's names and shapes."""
    keys = set(state_dict)
    if "features.0.weight" in keys and "classifier.6.weight" in keys:
        return "alexnet_owt", {}
    if "fc10.weight" in keys:
        return "cifar_4layer", {}
    if "features.conv1.weight" in keys and "fc8.weight" in keys:
        if state_dict["features.conv1.weight"].shape[0] == 48:
            return "alexnet", {"towers": 1}
        return "alexnet", {}
    raise UserError("cannot tell which model these weights are for (names like "
                    f"{', '.join(sorted(keys)[:3])}); give --arch")


def _num_classes(arch: str, state_dict: dict) -> int:
    with torch.device("meta"):
        names = list(create_model(arch).state_dict())
    last = next(k for k in reversed(names) if k.endswith(".bias"))
    if last not in state_dict:
        raise UserError(f"the weights have no {last!r}: not a state dict of {arch}")
    return int(state_dict[last].shape[0])


def default_preprocess(arch: str) -> dict:
    """Preprocessing for weights that do not record theirs: torchvision's for the OWT net, ImageNet's
    per-channel mean without std for the paper's nets (their training subtracted a mean only)."""
    info = model_info(arch)
    std = IMAGENET_STD_RGB if info.pixel_std is not None else None
    return {"resize": 256, "crop_size": info.input_size, "mean_rgb": list(IMAGENET_MEAN_RGB),
            "std_rgb": None if std is None else list(std), "mean": "channel", "warp": False}


def _training_preprocess(arch: str, config: dict) -> tuple[dict, object]:
    """Preprocessing for a training checkpoint (``alexnet train`` keeps it out of the checkpoint): the
    mean of the prepared dataset its config names, as the trainer's final weights record it, when that
    dataset is still there; else ImageNet's defaults for the model."""
    pre = default_preprocess(arch)
    if config.get("crop_size"):
        pre["crop_size"] = int(config["crop_size"])
    data = config.get("data")
    if not isinstance(data, str) or not (Path(data) / "meta.json").is_file():
        return pre, None
    try:
        from alexnet.data import PreparedDataset

        ds = PreparedDataset(data)
    except Exception:  # noqa: BLE001  (a damaged or moved dataset: fall back to the defaults)
        return pre, None
    mean = config.get("mean", "image")
    pre.update({"resize": int(ds.size), "mean_rgb": [float(v) for v in ds.mean_rgb], "mean": mean,
                "warp": bool(ds.meta.get("warp", False))})
    return pre, (ds.mean_image if mean == "image" else None)


def _find(d: dict, *keys):
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return None


def _whole_number(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _error_rate(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 else None


def training_record(meta: dict) -> dict:
    """What a training checkpoint says about its training, as the trainer's final weights record it
    (``trained_by``, ``epochs``, ``steps``, the last epoch's ``*_err``, ``best_val_top1_err``). The file is
    untrusted: only whole numbers and error rates in 0..1 are kept; anything else is left out."""
    position = meta.get("position") if isinstance(meta.get("position"), dict) else {}
    history = meta.get("history") if isinstance(meta.get("history"), list) else []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    best = meta.get("best") if isinstance(meta.get("best"), dict) else {}
    record: dict = {}
    if meta.get("format") == "alexnet-train-checkpoint":
        record["trained_by"] = "alexnet train (checkpoint)"
    epochs = _whole_number(position.get("epoch"))
    if epochs is None:
        epochs = _whole_number(meta.get("epoch"))
    steps = _whole_number(position.get("step"))
    if steps is None:
        steps = _whole_number(meta.get("step"))
    for key, value in (("epochs", epochs), ("steps", steps)):
        if value is not None:
            record[key] = value
    if _whole_number(position.get("batch")):  # saved inside an epoch: its batches so far
        record["batches_into_epoch"] = position["batch"]
    for key, value in last.items():
        if isinstance(key, str) and key.endswith("_err") and _error_rate(value) is not None:
            record[key] = _error_rate(value)
    if _error_rate(best.get("val_top1_err")) is not None:
        record["best_val_top1_err"] = _error_rate(best["val_top1_err"])
    return record


def state_dict_to_weights(obj, *, arch: str | None = None, model_options: dict | None = None,
                          classes: list[dict] | None = None, source: str = "") -> WeightsFile:
    """A loaded PyTorch object (a plain state dict, or a checkpoint dict holding one under "model" /
    "state_dict" with "arch"/"config"/"classes"/"preprocess" beside it) as a :class:`WeightsFile`."""
    meta: dict = {}
    sd = obj
    if isinstance(obj, dict) and not _is_state_dict(obj):
        meta = obj
        sd = _find(obj, "model", "state_dict", "model_state", "model_state_dict", "ema")
    if not _is_state_dict(sd):
        raise UserError(f"{source or 'the file'}: no model state dict in it (expected a dict of tensors, "
                        "or a checkpoint with one under 'model')")
    sd = _strip_prefixes(sd)
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    model_cfg = config.get("model") if isinstance(config.get("model"), dict) else {}
    file_arch = (_find(meta, "arch", "model_name") or _find(model_cfg, "arch", "name")
                 or _find(config, "arch", "model_name"))
    file_arch = file_arch if isinstance(file_arch, str) else None
    file_options = _find(meta, "model_options") or _find(model_cfg, "options", "model_options") \
        or _find(config, "model_options") or {}
    if arch is None and file_arch is None:
        guessed, guessed_options = guess_arch(sd)
        file_arch, file_options = guessed, {**guessed_options, **file_options}
    arch = arch or file_arch
    model_info(arch)  # unknown name -> UnknownModelError
    options = {**(file_options if arch == file_arch else {}), **(model_options or {})}
    num_classes = _num_classes(arch, sd)
    file_classes = meta.get("classes") if isinstance(meta.get("classes"), list) else None
    preprocess = meta.get("preprocess") if isinstance(meta.get("preprocess"), dict) else None
    mean_image = meta.get("mean_image")
    mean_image = mean_image.float().numpy() if isinstance(mean_image, torch.Tensor) else None
    if preprocess is None:
        preprocess, data_mean = _training_preprocess(arch, config)
        mean_image = mean_image if mean_image is not None else data_mean
    return WeightsFile(arch=arch, state_dict=sd, num_classes=num_classes, model_options=dict(options),
                       classes=classes or file_classes or default_classes(num_classes),
                       preprocess=dict(preprocess), mean_image=mean_image,
                       extra={"converted_from": "pytorch", "source": source, **training_record(meta)})
