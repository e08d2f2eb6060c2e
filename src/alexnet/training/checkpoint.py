"""Resumable training state: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is one ``torch.save`` of a dict of plain tensors, numbers, strings, lists and dicts (never a
pickled object), so that loading it cannot run code:

    {"format": "alexnet-train-checkpoint", "version": 1,
     "config": {...},                        # TrainConfig.to_dict()
     "model": state_dict, "optimizer": state_dict, "schedule": {...},
     "position": {"epoch": e, "batch": b, "step": s},   # next batch to run: batch b of epoch e
     "meter": [loss_sum, top1_correct, top5_correct, images],   # the partial epoch so far
     "epoch_seconds": float, "history": [row, ...], "best": {...},
     "rng": {"torch": [ByteTensor per rank], "cuda": [[ByteTensor per device] per rank]}}

Writing: a temporary file in the same directory, flushed and fsynced, then renamed over the old one (and
the directory fsynced), so a kill at any moment leaves either the old or the new checkpoint, whole. The
trainer calls it on its background writer (:mod:`alexnet.training.writer`) with a host copy of the state.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from alexnet.errors import UserError

FORMAT = "alexnet-train-checkpoint"
VERSION = 1


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def link_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Make ``dst`` the same checkpoint as ``src`` (a hard link, or a copy), atomically.

    ``best`` is usually the ``last`` checkpoint of some epoch: linking costs no second write, and since
    ``last`` is always replaced by rename, the link keeps pointing at the old file's data.
    """
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:  # no hard links on this file system
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)
    _fsync_dir(dst.parent)
    return dst


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs)."""
    from alexnet.weights.torchfile import torch_load_safe

    path = Path(path)
    state = torch_load_safe(path, what="checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not an alexnet training checkpoint")
    from alexnet.untrusted import check_bounded

    check_bounded(state, str(path))
    version = state.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise UserError(f"{path}: not an alexnet training checkpoint (version {version!r})")
    if version > VERSION:
        raise UserError(f"{path}: checkpoint version {version} is newer than this alexnet supports")
    return state


def check_resumable(state: dict, path: str | os.PathLike) -> None:
    """The fields a resume reads, of the types it reads them as (a one-line refusal, not a crash inside
    the trainer); position and counts within bounds (a position of 10**18 epochs "finished" a run)."""
    import math

    def bad(field: str, what: str) -> UserError:
        return UserError(f"{path}: damaged checkpoint: {field} must be {what}")

    def count(v, top: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top

    def finite(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for field in ("config", "model", "optimizer", "schedule", "position", "best"):
        if not isinstance(state.get(field), dict):
            raise bad(field, "a mapping")
    history = state.get("history")
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise bad("history", "a list of mappings")
    pos = state["position"]
    for key, top in (("epoch", 10**6), ("batch", 10**9), ("step", 10**12)):
        if not count(pos.get(key), top):
            raise bad(f"position's {key}", f"a whole number in 0..{top:,}")
    meter = state.get("meter")
    if not isinstance(meter, (list, tuple)) or len(meter) != 4 or not all(finite(v) and v >= 0 for v in meter):
        raise bad("meter", "4 finite numbers >= 0")
    for key in ("world_size", "threads"):
        if state.get(key) is not None and not (count(state[key], 1_000_000) and state[key] >= 1):
            raise bad(key, "a whole number >= 1")
    for key in ("epoch_seconds", "epoch_train_seconds"):
        v = state.get(key, 0.0)
        if not finite(v) or v < 0:
            raise bad(key, "a finite number of seconds >= 0")
    best = state["best"]
    err, epoch = best.get("val_top1_err"), best.get("epoch")
    if not {"val_top1_err", "epoch"} <= set(best) or not (err is None or finite(err)) \
            or not (epoch is None or count(epoch, 10**6)):
        raise bad("best", "a validation error (a finite number or null) and an epoch (a whole number or null)")
    if not isinstance(state.get("rng", {}), dict):
        raise bad("rng", "a mapping")


def rng_state() -> dict:
    """This process's torch RNG states (CPU and every CUDA device), as tensors."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
