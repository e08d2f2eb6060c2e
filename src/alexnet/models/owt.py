"""The "one weird trick" AlexNet (Krizhevsky 2014), as shipped by ``torchvision.models.alexnet``.

64-192-384-256-256 kernels, no LRN, no groups, padding 2 on conv1, adaptive average pooling to 6x6 and
dropout *before* fc6 and fc7. The module names and order equal torchvision's, so its state dict (and its
pretrained ImageNet weights, acc@1 56.522 / acc@5 79.066) load unchanged. 61,100,840 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.models.layers import ClassifierHead, check_dropout
from alexnet.models.registry import register_model


class AlexNetOWT(ClassifierHead, nn.Module):
    """timm's head API (:class:`~alexnet.models.layers.ClassifierHead`): ``num_features`` (4096),
    ``get_classifier()`` (``classifier[6]``), ``reset_classifier(num_classes)`` (a new ``classifier[6]`` with
    PyTorch's default init, as torchvision's; 0: none, the net returns fc7 after ReLU). Any input of at least
    63x63 works (adaptive pooling to 6x6), so no input size is enforced."""

    input_size = 224
    pixel_std = (58.395, 57.12, 57.375)  # torchvision's ImageNet normalisation (0.229, 0.224, 0.225) in 0..255 units
    input_note = " (or any size from 63 up: adaptive pooling before the classifier)"

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        check_dropout(dropout)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # (B, 64, 55, 55)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 64, 27, 27)
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # (B, 192, 27, 27)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 192, 13, 13)
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # (B, 384, 13, 13)
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # (B, 256, 13, 13)
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # (B, 256, 13, 13)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 256, 6, 6)
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        self.num_features = 4096
        # Initialisation: PyTorch's defaults, as torchvision (which does not use the paper's).

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def _set_classifier(self, head: nn.Module) -> None:
        self.classifier[-1] = head  # same key: classifier.6.weight / .bias

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self._features(x))  # (B, 256, 6, 6)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(x, 1)
        if pre_logits:
            return self.classifier[:-1](x)  # (B, 4096): fc7 after ReLU
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(
    description="one-weird-trick AlexNet, state-dict compatible with torchvision.models.alexnet",
    input_size=224,
    pixel_std=AlexNetOWT.pixel_std,
    paper_notes="departs: 64-192-384-256-256, no LRN, no towers, dropout before fc6/fc7, PyTorch init",
)
def alexnet_owt(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNetOWT:
    return AlexNetOWT(num_classes, dropout=dropout)
