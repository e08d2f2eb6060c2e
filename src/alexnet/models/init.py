"""Weight initialisations a training run can choose instead of a model's own (``TrainConfig.init``).

A model's own initialisation is the default: the paper's N(0, 0.01) with biases 1 in conv2/4/5 and fc6/fc7
for ``alexnet``, Caffe's for the Caffe nets, PyTorch's defaults for ``alexnet_owt`` (as torchvision).
"""

from __future__ import annotations

import torch
from torch import nn

INITS = ("model", "kaiming")


@torch.no_grad()
def kaiming_init(model: nn.Module) -> nn.Module:
    """He-normal weights (fan-out, ReLU gain, torchvision's choice for VGG and ResNet convolutions) in every
    conv and linear layer, zero biases, and the last layer N(0, 0.01) so that the first predictions are
    near uniform.

    Why it exists: PyTorch's default init (used by ``alexnet_owt``, as by torchvision) scales each layer's
    output down (uniform with variance 1 / (3 fan-in), then halved by the ReLU), so the signal reaching the
    classifier is tiny and SGD can spend its first hundred-odd steps on a plateau. The demo has 128 steps;
    on it this init brought every training seed tried off the plateau where the default left some (chosen
    by measurement: docs/TRAINING.md, "The demo").
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    if layers:
        nn.init.normal_(layers[-1].weight, std=0.01)
    return model


def initialize(model: nn.Module, name: str) -> nn.Module:
    """Apply the initialisation ``name`` (one of :data:`INITS`; ``model`` leaves the model's own)."""
    if name == "kaiming":
        return kaiming_init(model)
    if name != "model":
        raise ValueError(f"unknown init {name!r}; choose from {', '.join(INITS)}")
    return model
