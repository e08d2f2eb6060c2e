"""Data: sources, the paper's preprocessing done once, the packed format, and the augmenting loader.

    from alexnet.data import prepare_dataset, PreparedDataset, Loader, split_indices
    ds = prepare_dataset("imagenette-train.tar.gz", "data/imagenette", classes_file="synset_words.txt")
    train_idx, val_idx = split_indices(len(ds), 0.1, seed=0)
    train = Loader(ds, 128, train=True, indices=train_idx, device="cuda")
    for epoch in range(90):
        train.set_epoch(epoch)
        for x, y in train:   # x float32 (128, 3, 224, 224) on the device, y int64 (128,)
            ...

Modules: ``sources`` (the four layouts), ``preprocess`` (decode, RGB, 256 crop), ``prepare`` (parallel,
resumable writing), ``format`` (shards, ``PreparedDataset``), ``stats`` (mean image, RGB PCA),
``array`` (``ArrayDataset``), ``augment`` (crops, mirrors, lighting, ten crops), ``loader``
(``Loader``), ``split`` (held-out splits).
"""

from alexnet.data.array import ArrayDataset
from alexnet.data.augment import lighting_shift
from alexnet.data.classes import make_classes, read_synsets
from alexnet.data.crops import center_offset, ten_crop_offsets
from alexnet.data.format import PreparedDataset
from alexnet.data.loader import Loader
from alexnet.data.prepare import prepare_dataset
from alexnet.data.split import split_indices
from alexnet.data.stats import IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC

__all__ = ["IMAGENET_PCA_EIGVAL", "IMAGENET_PCA_EIGVEC", "ArrayDataset", "Loader", "PreparedDataset",
           "center_offset", "lighting_shift", "make_classes", "prepare_dataset", "read_synsets",
           "split_indices", "ten_crop_offsets"]
