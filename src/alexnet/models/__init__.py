"""Registered models. Importing this package registers every builder."""

from alexnet.models import alexnet as _paper  # noqa: F401  (registers alexnet, alexnet_caffe, caffenet)
from alexnet.models import cifar as _cifar  # noqa: F401
from alexnet.models import owt as _owt  # noqa: F401
from alexnet.models.alexnet import AlexNet, AlexNetConfig
from alexnet.models.cifar import CifarNet
from alexnet.models.layers import (
    CeilPad2d,
    ClassifierHead,
    GroupedConv2d,
    InputSizeError,
    LocalResponseNorm,
    set_grouped_conv,
)
from alexnet.models.meta import ModelMeta, meta_of
from alexnet.models.owt import AlexNetOWT
from alexnet.models.registry import ModelInfo, create_model, list_models, model_info, register_model
from alexnet.models.summary import LayerRow, count_parameters, summarize

__all__ = [
    "AlexNet", "AlexNetConfig", "AlexNetOWT", "CeilPad2d", "CifarNet", "ClassifierHead", "GroupedConv2d",
    "InputSizeError", "LayerRow", "LocalResponseNorm",
    "ModelInfo", "ModelMeta", "count_parameters", "create_model", "list_models", "meta_of", "model_info", "register_model",
    "set_grouped_conv", "summarize",
]
