"""Weights in and out: our ``.safetensors`` file, ``alexnet.load``, converters (torchvision, Caffe),
ONNX export and published weights records."""

from alexnet.weights.classes import imagenet_classes, match_classes, read_class_file
from alexnet.weights.file import WeightsFile, read_weights, save_weights
from alexnet.weights.load import load, resolve_weights, save_loaded
from alexnet.weights.preprocess import Preprocess, load_image
from alexnet.weights.records import RECORDS, TORCHVISION, WeightsRecord, get_record

__all__ = ["RECORDS", "TORCHVISION", "Preprocess", "WeightsFile", "WeightsRecord", "get_record",
           "imagenet_classes", "load", "load_image", "match_classes", "read_class_file", "read_weights",
           "resolve_weights", "save_loaded", "save_weights"]
