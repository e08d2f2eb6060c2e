"""``ArrayDataset``: an in-memory uint8 image array with labels, with the interface of a prepared one.

For small data (CIFAR-10, the procedural demo data, tests): the loader reads it exactly as it reads a
raw prepared dataset, and the mean image and RGB PCA are computed here from the array itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from alexnet.data.classes import make_classes
from alexnet.data.format import ImageItems
from alexnet.data.stats import PCA_UNITS, compute_stats
from alexnet.errors import UserError


class ArrayDataset(ImageItems):
    """``ArrayDataset(images, labels, classes=None)``: ``images`` uint8 (N, S, S, 3) RGB, ``labels`` (N,).

    ``classes``: class dicts ``{index, wnid, name}`` or plain names (default: "0", "1", ...). The
    statistics (``mean_image``, ``mean_rgb``, ``std_rgb``, ``pca_eigval``, ``pca_eigvec``; same units
    as :class:`PreparedDataset`) are computed from ``images`` unless ``stats`` gives them (e.g. the
    training set's, for a test set). The array is used in place, not copied (unless read-only).
    """

    storage = "pixels"
    format = "array"

    def __init__(self, images, labels, classes: Sequence[dict] | Sequence[str] | None = None, *,
                 stats: dict | None = None):
        if isinstance(images, torch.Tensor):
            images = images.numpy()
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 \
                or images.shape[1] != images.shape[2]:
            raise UserError(f"images must be a uint8 array (N, S, S, 3), got {images.dtype} {images.shape}")
        if not images.flags.c_contiguous or not images.flags.writeable:
            images = np.ascontiguousarray(images).copy()
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) != len(images):
            raise UserError(f"{len(images)} images but {len(labels)} labels")
        if len(labels) and labels.min() < 0:
            raise UserError("labels must be >= 0")
        if classes is None:
            classes = [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
        self.classes = make_classes(classes)
        if len(labels) and labels.max() >= len(self.classes):
            raise UserError(f"label {int(labels.max())} but only {len(self.classes)} classes")
        self.images = images
        self.labels = labels
        self.size = int(images.shape[1])
        self._t = torch.from_numpy(images)
        st = stats if stats is not None else compute_stats(images)
        self.mean_image = np.asarray(st["mean_image"], np.float32)
        self.mean_rgb = np.asarray(st["mean_rgb"], np.float64)
        self.std_rgb = np.asarray(st.get("std_rgb", np.zeros(3)), np.float64)
        self.pca_eigval = np.asarray(st["pca_eigval"], np.float64)
        self.pca_eigvec = np.asarray(st["pca_eigvec"], np.float64)
        if self.mean_image.shape != (self.size, self.size, 3):
            raise UserError(f"stats mean_image has shape {self.mean_image.shape}, images are "
                            f"{self.size}x{self.size}")
        self.meta = {"count": len(labels), "classes": self.classes, "num_classes": len(self.classes),
                     "source": "array", "size": self.size, "format": "array",
                     "mean_rgb": self.mean_rgb.tolist(), "std_rgb": self.std_rgb.tolist(),
                     "pca_eigval": self.pca_eigval.tolist(), "pca_eigvec": self.pca_eigvec.tolist(),
                     "pca_units": PCA_UNITS, "skipped": []}

    def stats(self) -> dict:
        """The statistics, to pass as ``stats=`` to a held-out ArrayDataset."""
        return {"mean_image": self.mean_image, "mean_rgb": self.mean_rgb, "std_rgb": self.std_rgb,
                "pca_eigval": self.pca_eigval, "pca_eigvec": self.pca_eigvec}

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"ArrayDataset({len(self)} images, {len(self.classes)} classes, {self.size}x{self.size})"

    def pixels(self, i: int) -> torch.Tensor:
        """Image ``i`` as a uint8 (S, S, 3) tensor view."""
        return self._t[i]

    def gather_pixels(self, items: np.ndarray, out: np.ndarray) -> None:
        """Images ``items`` into ``out``, uint8 (N, S, S, 3), in one vectorised copy."""
        np.take(self.images, np.asarray(items, dtype=np.int64), axis=0, out=out)

    def get_uint8(self, index: int) -> np.ndarray:
        """Image ``index``: a new uint8 (S, S, 3) array."""
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"image {index} out of range for {len(self)} images")
        return self.images[index].copy()
