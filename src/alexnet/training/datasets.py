"""Which images a run trains and validates on: one routine for ``alexnet train`` and ``alexnet report``.

Training data: the dataset given in Python, else ``config.data`` (a prepared dataset), else the built-in
demo images. Validation data: the one given, else ``config.val``, else the held-out ``val_split`` of the
training data (drawn from the run's ``seed``), else none. Validation images are normalised with the
*training* set's statistics (mean image, PCA), as the model will be at test time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexnet.errors import UserError
from alexnet.training.config import TrainConfig

DEMO_DATA_SEED = 2012  # the demo images are the same whatever the training seed
STAT_KEYS = ("mean_image", "mean_rgb", "std_rgb", "pca_eigval", "pca_eigvec")


class WithStats:
    """A dataset seen through another's statistics (``STAT_KEYS``)."""

    def __init__(self, data, stats_from) -> None:
        self._data, self._stats_from = data, stats_from

    def __getattr__(self, name: str):
        if name in STAT_KEYS:
            return getattr(self._stats_from, name)
        return getattr(self._data, name)

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class RunData:
    train: object
    val: object | None
    train_idx: np.ndarray | None  # None: all of ``train``
    val_idx: np.ndarray | None  # None: all of ``val``
    train_desc: str
    val_desc: str  # where the validation images come from, or why there are none


def _open(path, relative_to: Path | None):
    from alexnet.data import PreparedDataset

    p = Path(path)
    if relative_to is not None and not p.is_absolute() and not p.exists() and (relative_to / p).exists():
        p = relative_to / p  # a run directory moved with its data beside it
    return PreparedDataset(p)


def run_datasets(c: TrainConfig, dataset=None, val_dataset=None, *, relative_to: Path | None = None) -> RunData:
    """The run's training and validation data (see the module docstring). ``relative_to``: where to look
    for relative data paths that do not exist from here (the run directory, for a report)."""
    from alexnet.data import split_indices

    if dataset is not None:
        train_desc = type(dataset).__name__
    elif c.data is not None:
        dataset, train_desc = _open(c.data, relative_to), f"{c.data}"
    else:
        from alexnet.data.demo import demo_dataset

        dataset = demo_dataset(c.demo_images, c.demo_size, seed=DEMO_DATA_SEED, num_classes=c.demo_classes)
        train_desc = f"the built-in demo images ({c.demo_images} generated, {c.demo_classes} classes)"
    train_idx = val_idx = None
    if val_dataset is None and c.val is not None:
        val_dataset = _open(c.val, relative_to)
    if val_dataset is not None:
        if len(val_dataset.classes) != len(dataset.classes):
            raise UserError(f"validation data has {len(val_dataset.classes)} classes, training data "
                            f"{len(dataset.classes)}")
        if c.mean == "image" and val_dataset.size != dataset.size:
            raise UserError(f"validation images are {val_dataset.size}px, training images {dataset.size}px: "
                            "the mean image does not fit (prepare both at one size, or --mean channel)")
        val_desc = str(c.val) if c.val is not None else type(val_dataset).__name__
        val_dataset = WithStats(val_dataset, dataset)
    elif c.val_split > 0:
        train_idx, val_idx = split_indices(len(dataset), c.val_split, c.seed)
        val_dataset = dataset
        val_desc = f"{train_desc.split(' (')[0]} (held-out {c.val_split:g} of it, seed {c.seed})"
    else:
        val_desc = "the run has no validation data (no --val, --val-split 0)"
    return RunData(dataset, val_dataset, train_idx, val_idx, train_desc, val_desc)
