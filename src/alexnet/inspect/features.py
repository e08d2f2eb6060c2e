"""The 4096-d fc7 activations (after ReLU) the paper uses for its nearest neighbours (Figure 4, right).

Images are cropped and normalised as in evaluation (centre crop, the weights' mean). Saved as ``.npz``
(``features``, ``labels``, ``indices`` and a record of what produced them: ``arch``, ``layer``,
``weights_sha256`` (:func:`weights_fingerprint`) and ``setup_sha256`` (:func:`setup_fingerprint`: model
options and preprocessing)) or ``.npy`` (the (N, D) float32 matrix alone, for
other tools: it cannot be checked against the weights later).

A features file is only valid for the weights that computed it: ``alexnet neighbors --features`` with
weights that have changed since (training resumed, another model) would rank images by a stale net and
still look plausible. So the file records a fingerprint of the weights and :func:`check_features` refuses
a file whose fingerprint, arch or layer differs from the net at hand. Files are read as untrusted input:
headers are checked before anything is allocated, nothing is unpickled, metadata has bounded sizes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.evaluation.batches import iter_squares
from alexnet.evaluation.predict import _device_of
from alexnet.progress import Progress
from alexnet.weights.load import model_preprocess

# The layer the features come from: the classifier's input, ``forward_head(x, pre_logits=True)`` (fc7
# after ReLU for the ImageNet nets, the flattened last conv block for cifar_4layer). Recorded in the file
# so that features of another layer, should one ever be offered, are not compared with these.
FEATURES_LAYER = "pre_logits"

# What the recorded metadata may look like (it is echoed in one-line messages: no newlines, bounded).
_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_META_BYTES = 4096  # a metadata member's data: a 0-d string of at most 1024 characters
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


@torch.no_grad()
def fc7(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """fc7 activations of normalised crops (B, 3, C, C): (B, 4096) for the ImageNet models."""
    if not hasattr(model, "forward_head"):
        raise UserError(f"{type(model).__name__} has no forward_head(pre_logits=True) to take features from")
    return model.forward_head(model.forward_features(x), pre_logits=True).float()


@torch.no_grad()
def image_features(model: nn.Module, squares: torch.Tensor) -> torch.Tensor:
    """fc7 of uint8 squares (B, S, S, 3) with the model's preprocessing (centre crop)."""
    pre = model_preprocess(model)
    return fc7(model, pre.crops(squares.to(_device_of(model))))


@torch.no_grad()
def extract_features(model: nn.Module, dataset, *, batch_size: int = 64, indices=None, progress: bool = True,
                     workers: int | None = None) -> np.ndarray:
    """fc7 features of every image of a prepared dataset (or of ``indices``): float32 (N, D)."""
    was_training = model.training
    model.eval()
    order = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    out: list[np.ndarray] = []
    try:
        with Progress(len(order), "features", enabled=progress) as bar:
            for idx, squares in iter_squares(dataset, order, batch_size, workers=workers):
                out.append(image_features(model, squares).cpu().numpy())
                bar.update(len(idx))
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def weights_fingerprint(model: nn.Module | dict[str, torch.Tensor]) -> str:
    """A SHA-256 (hex) of a net's weights: for every tensor of its state dict, in name order, its name,
    dtype and shape, then all its bytes.

    Why every byte rather than a sample or a cheaper checksum: resuming training for one more epoch, or a
    fine-tune of the last layer, must change the fingerprint, and hashing everything costs little.
    hashlib's SHA-256 uses the CPU's SHA instructions (x86 since about 2017, ARMv8): the paper's
    61M-parameter ``alexnet`` (244 MB of float32) took 0.14 s (1.8 GB/s) on the project's 2-core machine;
    a CPU without them hashes at roughly 0.5 GB/s, about 0.5 s (an estimate, not measured). A model on the
    GPU adds the copy to the host. It fingerprints the loaded net, not the file: the same weights read from
    ``.safetensors``, a checkpoint or a ``.pth`` agree.
    """
    state = model.state_dict() if isinstance(model, nn.Module) else model
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        # JSON quoting keeps the header unambiguous; the bytes that follow have a length fixed by it.
        h.update(json.dumps([name, str(t.dtype).replace("torch.", ""), list(t.shape)]).encode() + b"\n")
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def setup_fingerprint(model: nn.Module) -> str:
    """A SHA-256 (hex) of what besides the weights shapes the features: the model's options (``--opt``:
    LRN on or off changes the features, not the weights) and its preprocessing (``--mean``: the mean
    subtracted, the crop), with the mean image's bytes."""
    from alexnet.models import meta_of

    pre = model_preprocess(model)
    h = hashlib.sha256(json.dumps({"options": meta_of(model).options, "preprocess": pre.to_metadata()},
                                  sort_keys=True, default=str).encode())
    if pre.uses_mean_image:
        h.update(np.ascontiguousarray(pre.mean_image, dtype="<f4").tobytes())
    return h.hexdigest()


def features_record(model: nn.Module) -> dict[str, str]:
    """What a features file records about the net that computed it: ``arch``, ``layer``, ``weights_sha256``
    and ``setup_sha256`` (:func:`setup_fingerprint`)."""
    from alexnet.models import meta_of

    return {"arch": meta_of(model).arch or type(model).__name__, "layer": FEATURES_LAYER,
            "weights_sha256": weights_fingerprint(model), "setup_sha256": setup_fingerprint(model)}


def save_features(path: str | os.PathLike, features: np.ndarray, *, labels=None, indices=None,
                  model: nn.Module | None = None) -> Path:
    """Write features as ``.npz`` (with ``labels``, ``indices`` and, given the ``model`` that computed them,
    its :func:`features_record`) or ``.npy`` (the matrix alone)."""
    from alexnet.files import atomic_file

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise UserError(f"features file must end in .npy or .npz, got {path.name!r}")
    with atomic_file(path) as f:  # a temporary name, then renamed (never written through a link)
        _write_features(f, suffix, features, labels=labels, indices=indices, model=model)
    return path


def _write_features(f, suffix: str, features: np.ndarray, *, labels, indices, model) -> None:
    if suffix == ".npy":
        np.save(f, features.astype(np.float32))
    else:
        extra = {}
        if labels is not None:
            extra["labels"] = np.asarray(labels, dtype=np.int64)
        if indices is not None:
            extra["indices"] = np.asarray(indices, dtype=np.int64)
        if model is not None:
            extra.update({k: np.array(v) for k, v in features_record(model).items()})  # 0-d str: no pickle
        np.savez(f, features=features.astype(np.float32), **extra)


@dataclass
class FeaturesFile:
    """A features file as read by :func:`read_features`. ``arch``, ``layer``, ``weights_sha256``: what
    computed the features; None for a ``.npy`` or a file written before they were recorded."""

    path: Path
    features: np.ndarray  # (N, D) floating point, finite
    labels: np.ndarray | None = None  # (N,) int
    indices: np.ndarray | None = None  # (N,) int
    arch: str | None = None
    layer: str | None = None
    weights_sha256: str | None = None
    setup_sha256: str | None = None  # model options and preprocessing (:func:`setup_fingerprint`)
    container: str = "npz"  # or "npy": the matrix alone

    @property
    def checkable(self) -> bool:
        """Whether the file records the weights that computed it (see :func:`check_features`)."""
        return self.weights_sha256 is not None


class NotFeaturesError(UserError):
    """A file that is not a features file written by ``alexnet features``."""

    def __init__(self, path, why: str):
        super().__init__(f"{path} is not a features file written by 'alexnet features' (.npz): {why}")


def _sniff(head: bytes) -> str:
    """What a file that is neither .npz nor .npy seems to hold, in a few words."""
    if not head:
        return "the file is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut at the end of what was read is still text
        text = head[:e.start].decode("utf-8") if e.start >= len(head) - 3 and e.start > 0 else None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "it holds text" + (" (CSV?)" if "," in text or ";" in text else "")
    if head.startswith(b"PK"):
        return "a zip file, but not a readable .npz"
    return "it holds neither .npz nor .npy data"


def _read_npy(f, size: int, path, member: str, *, max_bytes: int | None = None) -> np.ndarray:
    """One ``.npy`` stream of ``size`` bytes (a file, or a member of an ``.npz``): its header is checked
    (no objects, a data size that matches ``size``) before the array is allocated and read."""
    fmt = np.lib.format
    start = f.tell()
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise NotFeaturesError(path, f"{member!r} has .npy format version {version[0]}.{version[1]}, "
                                     "not 1.0 or 2.0")
    if dtype.hasobject:
        raise NotFeaturesError(path, f"{member!r} holds Python objects (pickled data), not numbers")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: no overflow
    follow = size - (f.tell() - start)
    if nbytes != follow:
        raise NotFeaturesError(path, f"{member!r} is truncated or damaged (its header announces {nbytes} "
                                     f"bytes, {follow} follow)")
    if max_bytes is not None and nbytes > max_bytes:
        raise NotFeaturesError(path, f"{member!r} is {nbytes} bytes, more than the {max_bytes} it may have")
    f.seek(start)
    return fmt.read_array(f, allow_pickle=False)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    names = ("features", "labels", "indices", "arch", "layer", "weights_sha256", "setup_sha256")
    out = {}
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: info for info in zf.infolist()}
        if "features.npy" not in members:
            raise NotFeaturesError(path, "no 'features' array in it")
        for name in names:
            info = members.get(name + ".npy")
            if info is None:
                continue
            limit = None if name in ("features", "labels", "indices") else _MAX_META_BYTES  # a short string
            with zf.open(info) as f:
                out[name] = _read_npy(f, info.file_size, path, name, max_bytes=limit)
    return out


def _meta_string(path, arrays: dict, name: str, pattern: re.Pattern) -> str | None:
    if name not in arrays:
        return None
    a = arrays[name]
    if a.ndim != 0 or a.dtype.kind != "U":
        raise NotFeaturesError(path, f"{name!r} must be a string, got a {a.dtype} array of shape {a.shape}")
    text = str(a[()])
    if not pattern.fullmatch(text):
        raise NotFeaturesError(path, f"{name!r} is not a valid {name} ({text[:40]!r})")
    return text


def _index_array(path, arrays: dict, name: str, rows: int) -> np.ndarray | None:
    if name not in arrays:
        return None
    a = arrays[name]
    if a.ndim != 1 or a.dtype.kind not in "iu" or a.shape[0] != rows:
        raise NotFeaturesError(path, f"{name!r} must be {rows} integers (one per row), got a {a.dtype} array "
                                     f"of shape {a.shape}")
    return a


def read_features(path: str | os.PathLike) -> FeaturesFile:
    """A features file written by :func:`save_features`, validated as untrusted input: any other file
    (CSV text, random bytes, an array of the wrong shape, objects, a damaged zip) raises
    :class:`NotFeaturesError` (a :class:`UserError`) in one line. Nothing is unpickled."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            if head.startswith(_NPY_MAGIC):
                f.seek(0)
                size = os.fstat(f.fileno()).st_size
                container, arrays = "npy", {"features": _read_npy(f, size, path, "features")}
            elif head.startswith(_ZIP_MAGIC):
                container, arrays = "npz", _read_npz(path)
            else:
                raise NotFeaturesError(path, _sniff(head))
    except FileNotFoundError:
        raise UserError(f"features file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a features file") from None
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as e:
        # ValueError: a bad .npy header; BadZipFile/zlib.error: a damaged zip; NotImplementedError: an
        # unsupported compression; RuntimeError: an encrypted member.
        why = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise NotFeaturesError(path, f"unreadable ({why})") from None
    except OSError as e:  # permissions, a read error
        raise UserError(f"cannot read features {path}: {e.strerror or e}") from None
    data = arrays["features"]
    if data.ndim != 2:
        raise NotFeaturesError(path, f"features must be a 2-D (images, dimensions) array, got shape "
                                     f"{data.shape}")
    if not np.issubdtype(data.dtype, np.floating):
        raise NotFeaturesError(path, f"features must be finite floating-point numbers ({data.dtype})")
    if not np.isfinite(data).all():
        raise UserError(f"{path}: features must be finite floating-point numbers ({data.dtype}, with NaN or "
                        "infinite values)")
    record = {name: _meta_string(path, arrays, name, pattern)
              for name, pattern in (("arch", _NAME), ("layer", _NAME), ("weights_sha256", _SHA256))}
    if any(v is None for v in record.values()) and any(v is not None for v in record.values()):
        missing = ", ".join(repr(k) for k, v in record.items() if v is None)
        raise NotFeaturesError(path, f"its record of the net that computed it is incomplete (no {missing})")
    setup = _meta_string(path, arrays, "setup_sha256", _SHA256)  # absent in files of the first version
    rows = data.shape[0]
    return FeaturesFile(path, data, labels=_index_array(path, arrays, "labels", rows),
                        indices=_index_array(path, arrays, "indices", rows), container=container,
                        setup_sha256=setup, **record)


def load_features(path: str | os.PathLike) -> np.ndarray:
    """The (N, D) matrix of a features file (see :func:`read_features`; no pickles)."""
    return read_features(path).features


def check_features(ff: FeaturesFile, model: nn.Module, *, labels=None,
                   recompute: str | None = None) -> str | None:
    """Refuse (:class:`UserError`, one line) features that ``model`` did not compute: another arch,
    layer or weights (by :func:`weights_fingerprint`), or, given the dataset's ``labels``, another number
    of images or other labels. ``recompute``: the command that would write fresh ones, for the message.
    Returns a note for a file that records no weights (a ``.npy``, or written before they were recorded)
    and so cannot be checked, else None."""
    how = f"; recompute them with: {recompute}" if recompute else ""
    if labels is not None and ff.features.shape[0] != len(labels):
        raise UserError(f"{ff.path} holds {ff.features.shape[0]} feature rows but the dataset has "
                        f"{len(labels)} images{how}")
    if labels is not None and ff.labels is not None and not np.array_equal(ff.labels, np.asarray(labels)):
        raise UserError(f"{ff.path} was computed for another dataset (its labels differ from this one's){how}")
    if not ff.checkable:
        kind = "a .npy" if ff.container == "npy" else "written before features files recorded them"
        advice = f"; recompute it with: {recompute} to have it checked" if recompute else ""
        return (f"{ff.path} does not record the weights that computed it ({kind}): it cannot be checked "
                f"against these weights{advice}")
    mine = features_record(model)
    if ff.arch != mine["arch"]:
        raise UserError(f"{ff.path} holds features of {ff.arch}, not of these weights' {mine['arch']}{how}")
    if ff.layer != mine["layer"]:
        raise UserError(f"{ff.path} holds features of layer {ff.layer}, not {mine['layer']}{how}")
    if ff.weights_sha256 != mine["weights_sha256"]:
        raise UserError(f"{ff.path} was computed with other weights (fingerprint {ff.weights_sha256[:12]}, "
                        f"these weights {mine['weights_sha256'][:12]}): stale or another model's features{how}")
    if ff.setup_sha256 is not None and ff.setup_sha256 != mine["setup_sha256"]:
        raise UserError(f"{ff.path} was computed with these weights but other model options or preprocessing "
                        f"(--opt, --mean){how}")
    return None
