"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) in PyTorch: the paper's network and its variants,
data preparation, training recipe, evaluation, inspection and weight conversion.

Quick use::

    import alexnet
    model = alexnet.create_model("alexnet", num_classes=1000)
    alexnet.list_models()

The names below and the subpackages (``alexnet.data``, ``alexnet.training``, ...) are imported on first
use, so that ``import alexnet`` (and the ``alexnet`` command, whose Ctrl-C must be one line even while torch
loads) does not import torch before it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "UserError": "alexnet.errors",
    "predict": "alexnet.evaluation.predict",
    "count_parameters": "alexnet.models",
    "list_models": "alexnet.models",
    "model_info": "alexnet.models",
    "summarize": "alexnet.models",
    "create_model": "alexnet.weights.load",
    "load": "alexnet.weights.load",
}
_SUBPACKAGES = ("cli", "data", "errors", "evaluation", "experiments", "files", "inspect", "models", "plotting",
                "progress", "runtime", "training", "weights")

__all__ = ["UserError", "__version__", "count_parameters", "create_model", "list_models", "load", "model_info",
           "predict", "summarize"]

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ imports these on first use
    from alexnet.errors import UserError
    from alexnet.evaluation.predict import predict
    from alexnet.models import count_parameters, list_models, model_info, summarize
    from alexnet.weights.load import create_model, load


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"alexnet.{name}")
    else:
        raise AttributeError(f"module 'alexnet' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(_SUBPACKAGES))
