"""Looking inside a trained net: conv1 kernels (Figure 3), fc7 features and nearest neighbours (Figure 4)."""

from alexnet.inspect.features import extract_features, image_features, load_features, save_features
from alexnet.inspect.kernels import conv1_kernels, plot_kernels
from alexnet.inspect.neighbors import nearest, plot_neighbors

__all__ = ["conv1_kernels", "extract_features", "image_features", "load_features", "nearest", "plot_kernels",
           "plot_neighbors", "save_features"]
