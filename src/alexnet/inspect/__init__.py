"""Looking inside a trained net: conv1 kernels (Figure 3), fc7 features and nearest neighbours (Figure 4)."""

from alexnet.inspect.features import (
    NotFeaturesError,
    check_features,
    extract_features,
    image_features,
    load_features,
    read_features,
    save_features,
    weights_fingerprint,
)
from alexnet.inspect.kernels import conv1_kernels, plot_kernels
from alexnet.inspect.neighbors import nearest, plot_neighbors

__all__ = ["NotFeaturesError", "check_features", "conv1_kernels", "extract_features", "image_features",
           "load_features", "nearest", "plot_kernels", "plot_neighbors", "read_features", "save_features",
           "weights_fingerprint"]
