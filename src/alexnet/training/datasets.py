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
    """A dataset seen through another's statistics (``STAT_KEYS``); with ``label_map``, its labels as the
    other's classes number them (``label_map[i]``: the other's index of this dataset's class ``i``)."""

    def __init__(self, data, stats_from, label_map: list[int] | None = None) -> None:
        self._data, self._stats_from = data, stats_from
        if label_map is not None:
            self.labels = np.asarray(label_map, dtype=np.int64)[np.asarray(data.labels, dtype=np.int64)]
            self.classes = stats_from.classes

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


DATASET_NEEDS = ("classes", "labels", "size", "mean_image", "get_uint8")


def _check_dataset(dataset, name: str) -> None:
    """A dataset handed to the trainer is one of ours (the Loader reads whole batches from its storage)."""
    if dataset is not None and not all(hasattr(dataset, a) for a in DATASET_NEEDS):
        raise UserError(f"{name}= takes a PreparedDataset or an ArrayDataset (ArrayDataset(images, labels, "
                        f"classes=...) wraps uint8 (N, S, S, 3) arrays), got {type(dataset).__name__}")


def run_datasets(c: TrainConfig, dataset=None, val_dataset=None, *, relative_to: Path | None = None) -> RunData:
    """The run's training and validation data (see the module docstring). ``relative_to``: where to look
    for relative data paths that do not exist from here (the run directory, for a report)."""
    from alexnet.data import split_indices

    for given, name in ((dataset, "dataset"), (val_dataset, "val_dataset")):
        _check_dataset(given, name)
    if dataset is not None:
        given = f"{len(dataset)} images given in memory"  # e.g. an experiment's subset of c.data
        train_desc = f"{given} from {c.data}" if c.data else given
    elif c.data is not None:
        dataset, train_desc = _open(c.data, relative_to), f"{c.data}"
    else:
        from alexnet.data.demo import demo_dataset

        dataset = demo_dataset(c.demo_images, c.demo_size, seed=DEMO_DATA_SEED, num_classes=c.demo_classes)
        train_desc = f"the built-in demo images ({c.demo_images} generated, {c.demo_classes} classes)"
    train_idx = val_idx = None
    if val_dataset is None and c.val is not None:
        val_dataset = _open(c.val, relative_to)
    label_map = None
    if val_dataset is not None:
        from alexnet.weights.classes import match_classes

        # the same classes in the same order, or its classes found among the training data's by WNID or
        # name (Imagenette's val folder prepared alone against its train set prepared with the 1000
        # ImageNet classes): its labels renumbered; else a one-line error naming what does not match
        mapping = match_classes(list(val_dataset.classes), list(dataset.classes), len(dataset.classes),
                                what="validation data", against="training data")
        if mapping != list(range(len(dataset.classes))):
            label_map = mapping
        if c.mean == "image" and val_dataset.size != dataset.size:
            raise UserError(f"validation images are {val_dataset.size}px, training images {dataset.size}px: "
                            "the mean image does not fit (prepare both at one size, or --mean channel)")
        val_desc = str(c.val) if c.val is not None else f"{len(val_dataset)} images given in memory"
        val_dataset = WithStats(val_dataset, dataset, label_map)
    elif c.val_split > 0:
        train_idx, val_idx = split_indices(len(dataset), c.val_split, c.seed)
        val_dataset = dataset
        val_desc = f"{train_desc.split(' (')[0]} (held-out {c.val_split:g} of it, seed {c.seed})"
    else:
        val_desc = "the run has no validation data (no --val, --val-split 0)"
    return RunData(dataset, val_dataset, train_idx, val_idx, train_desc, val_desc)
