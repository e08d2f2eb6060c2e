"""Weights in and out: our ``.safetensors`` file, loading, conversion and export."""

from alexnet.weights.file import WeightsFile, read_weights, save_weights

__all__ = ["WeightsFile", "read_weights", "save_weights"]
