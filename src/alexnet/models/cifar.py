"""The four-layer CIFAR-10 network of the paper's Figure 1 (ReLU vs tanh).

The paper does not list this net's layers. We follow cuda-convnet's CIFAR-10 example ``layers-18pct``
(docs/PAPER.md, "Results to compare with"), three conv layers and one fully connected layer:

    conv1 32 @ 5x5 p2 -> act -> maxpool 3/2 -> LRN(3)    (B, 32, 32, 32) -> (B, 32, 16, 16)
    conv2 32 @ 5x5 p2 -> act -> avgpool 3/2 -> LRN(3)    (B, 32, 16, 16) -> (B, 32, 8, 8)
    conv3 64 @ 5x5 p2 -> act -> avgpool 3/2              (B, 64, 8, 8)   -> (B, 64, 4, 4)
    fc10                                                 (B, num_classes)

cuda-convnet's pooling output size is ``1 + ceil((W - z) / s)`` (32 -> 16), hence ``ceil_mode=True``.
LRN as in layers-params-18pct: size 3, alpha 5e-5 (divided by n, as cuda-convnet does), beta 0.75, k=1.
Init as in layers-18pct: weight std 1e-4 for conv1, 0.01 elsewhere; biases 0.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from alexnet.models.layers import ClassifierHead, LocalResponseNorm, init_normal, make_activation
from alexnet.models.registry import register_model


class CifarNet(ClassifierHead, nn.Module):
    """timm's head API (:class:`~alexnet.models.layers.ClassifierHead`): ``num_features`` (1024, the flattened
    pool3 maps), ``get_classifier()`` (fc10), ``reset_classifier(num_classes)`` (a new fc10, N(0, 0.01)
    weights and zero biases as layers-18pct; 0: none, the net returns the 1024 features). Takes 32x32 input."""

    head_name = "fc10"

    input_size = 32
    feature_shape = (64, 4, 4)

    def __init__(self, num_classes: int = 10, activation: str = "relu", lrn: bool = True) -> None:
        super().__init__()

        def norm() -> nn.Module:
            return LocalResponseNorm(size=3, alpha=5e-5, beta=0.75, k=1.0) if lrn else nn.Identity()

        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 32, kernel_size=5, padding=2)),  # (B, 32, 32, 32)
            ("act1", make_activation(activation)),
            ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),  # (B, 32, 16, 16)
            ("norm1", norm()),
            ("conv2", nn.Conv2d(32, 32, kernel_size=5, padding=2)),  # (B, 32, 16, 16)
            ("act2", make_activation(activation)),
            ("pool2", nn.AvgPool2d(3, 2, ceil_mode=True)),  # (B, 32, 8, 8)
            ("norm2", norm()),
            ("conv3", nn.Conv2d(32, 64, kernel_size=5, padding=2)),  # (B, 64, 8, 8)
            ("act3", make_activation(activation)),
            ("pool3", nn.AvgPool2d(3, 2, ceil_mode=True)),  # (B, 64, 4, 4)
        ]))
        self.fc10 = nn.Linear(64 * 4 * 4, num_classes)
        self.num_features = 64 * 4 * 4
        for name, m in [*self.features.named_children(), ("fc10", self.fc10)]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                self._init_layer(name, m)

    @staticmethod
    def _init_layer(name: str, m: nn.Conv2d | nn.Linear) -> None:
        init_normal(m, 1e-4 if name == "conv1" else 0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        y = self._features(x)  # (B, 64, 4, 4)
        self._check_features(x, y)
        return y

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(x, 1)  # (B, 1024)
        return x if pre_logits else self.fc10(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(
    description="four-layer CIFAR-10 net of Figure 1 (cuda-convnet layers-18pct), relu or tanh",
    input_size=32,
    default_num_classes=10,
    paper_notes="layers not given in the paper; follows cuda-convnet's layers-18pct",
)
def cifar_4layer(*, num_classes: int = 10, activation: str = "relu", lrn: bool = True) -> CifarNet:
    return CifarNet(num_classes, activation=activation, lrn=lrn)
