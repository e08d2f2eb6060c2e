"""The network of Krizhevsky, Sutskever & Hinton (2012), and Caffe's two readings of it.

Paper: "ImageNet Classification with Deep Convolutional Neural Networks", NIPS 2012, section 3 and
Figure 2. Five conv layers and three fully connected layers, 60,965,224 parameters for 1000 classes:

    input 3x224x224 (mean-subtracted)
    conv1  96 @ 11x11 /4 -> ReLU -> LRN -> maxpool 3/2     (B, 96, 55, 55)  -> (B, 96, 27, 27)
    conv2 256 @ 5x5 p2, 2 groups -> ReLU -> LRN -> pool    (B, 256, 27, 27) -> (B, 256, 13, 13)
    conv3 384 @ 3x3 p1, all maps -> ReLU                   (B, 384, 13, 13)
    conv4 384 @ 3x3 p1, 2 groups -> ReLU                   (B, 384, 13, 13)
    conv5 256 @ 3x3 p1, 2 groups -> ReLU -> pool           (B, 256, 13, 13) -> (B, 256, 6, 6)
    fc6 4096 -> ReLU -> dropout; fc7 4096 -> ReLU -> dropout; fc8 num_classes

The paper trained the net split over two GPUs ("towers"). On one device the split is exactly a grouped
convolution: conv2, conv4 and conv5 see only the maps of their own tower (``groups=2``); conv3 and the FC
layers see all of them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from alexnet.errors import BadOptionError
from alexnet.models.layers import (
    CeilPad2d,
    ClassifierHead,
    GroupedConv2d,
    LocalResponseNorm,
    check_dropout,
    init_normal,
    make_activation,
)
from alexnet.models.registry import register_model


@dataclass(frozen=True)
class AlexNetConfig:
    """Every knob in which the paper, its ablations and Caffe's nets differ."""

    widths: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256)
    groups: tuple[int, int, int, int, int] = (1, 2, 1, 2, 2)
    fc_width: int = 4096
    lrn: bool = True
    lrn_k: float = 2.0  # paper: k=2; Caffe's bvlc_alexnet: k=1
    lrn_alpha_over_n: bool = True  # see LocalResponseNorm
    pool_kernel: int = 3  # 3 = overlapping (z=3, s=2), 2 = non-overlapping (z=2, s=2)
    pool_before_lrn: bool = False  # CaffeNet's order: conv -> ReLU -> pool -> LRN
    dropout: float = 0.5
    activation: str = "relu"
    ceil_pad_conv1: bool = True  # cuda-convnet's size rule: 224 -> 55 (see CeilPad2d)
    init: str = "paper"  # "paper" or "caffe"


class AlexNet(ClassifierHead, nn.Module):
    """AlexNet with the paper's layer names (conv1..conv5, fc6..fc8).

    ``forward_features`` returns the pool5 maps (B, 256, 6, 6); ``forward_head(x, pre_logits=True)`` the
    4096-d fc7 activations (after ReLU) used in the paper's Figure 4 nearest neighbours. timm's head API
    (:class:`~alexnet.models.layers.ClassifierHead`): ``num_features`` (4096), ``get_classifier()`` (fc8),
    ``reset_classifier(num_classes)`` (a new fc8 with this net's init; 0: none, the net returns fc7).
    """

    head_name = "fc8"

    def __init__(self, num_classes: int = 1000, config: AlexNetConfig = AlexNetConfig()) -> None:
        super().__init__()
        c = config
        if c.pool_kernel not in (2, 3):
            raise BadOptionError(f"pool kernel must be 3 (overlapping) or 2 (non-overlapping), got {c.pool_kernel}")
        check_dropout(c.dropout)
        self.config = c
        w1, w2, w3, w4, w5 = c.widths
        g1, g2, g3, g4, g5 = c.groups

        def norm() -> nn.Module:
            if not c.lrn:
                return nn.Identity()
            return LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=c.lrn_k, alpha_over_n=c.lrn_alpha_over_n)

        def pool() -> nn.Module:
            # Overlapping pooling (section 3.4): z=3 > s=2. Both z=3 and z=2 map 55->27->13->6.
            return nn.MaxPool2d(kernel_size=c.pool_kernel, stride=2)

        def block(i: int) -> list[tuple[str, nn.Module]]:
            # conv -> ReLU -> LRN -> pool as in the paper and bvlc_alexnet; CaffeNet pools before LRN.
            tail = [(f"norm{i}", norm()), (f"pool{i}", pool())]
            return tail[::-1] if c.pool_before_lrn else tail

        layers: list[tuple[str, nn.Module]] = []
        if c.ceil_pad_conv1:
            layers.append(("pad1", CeilPad2d(kernel_size=11, stride=4)))
        layers += [
            ("conv1", nn.Conv2d(3, w1, kernel_size=11, stride=4, groups=g1)),  # (B, 96, 55, 55)
            ("act1", make_activation(c.activation)),
            *block(1),  # (B, 96, 27, 27)
            ("conv2", GroupedConv2d(w1, w2, kernel_size=5, padding=2, groups=g2)),  # (B, 256, 27, 27)
            ("act2", make_activation(c.activation)),
            *block(2),  # (B, 256, 13, 13)
            ("conv3", nn.Conv2d(w2, w3, kernel_size=3, padding=1, groups=g3)),  # (B, 384, 13, 13)
            ("act3", make_activation(c.activation)),
            ("conv4", GroupedConv2d(w3, w4, kernel_size=3, padding=1, groups=g4)),  # (B, 384, 13, 13)
            ("act4", make_activation(c.activation)),
            ("conv5", GroupedConv2d(w4, w5, kernel_size=3, padding=1, groups=g5)),  # (B, 256, 13, 13)
            ("act5", make_activation(c.activation)),
            ("pool5", pool()),  # (B, 256, 6, 6)
        ]
        self.features = nn.Sequential(OrderedDict(layers))

        # Dropout on the *outputs* of fc6 and fc7 (section 4.2: "the first two fully-connected layers").
        # torchvision instead puts it on their inputs, i.e. before fc6 and fc7.
        def drop() -> nn.Module:
            return nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()

        self.fc = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(w5 * 6 * 6, c.fc_width)),
            ("act6", make_activation(c.activation)),
            ("drop6", drop()),
            ("fc7", nn.Linear(c.fc_width, c.fc_width)),
            ("act7", make_activation(c.activation)),
            ("drop7", drop()),
        ]))
        self.fc8 = nn.Linear(c.fc_width, num_classes)
        self.num_features = c.fc_width
        # The classifier takes pool5's 6x6 maps: 224 (cuda-convnet's ceil rule, CeilPad2d) or 227 inputs.
        self.feature_shape = (w5, 6, 6)
        self.input_size = 224 if c.ceil_pad_conv1 else 227
        self.input_note = " (224 padded as 227, docs/PAPER.md)" if c.ceil_pad_conv1 else ""
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's initialisation (section 5), or bvlc_alexnet's.

        Paper: every weight ~ N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC layers (to give
        ReLUs positive inputs early on), 0 in conv1, conv3 and fc8.
        Caffe's bvlc_alexnet: the same weights except fc6/fc7 std 0.005, and biases 0.1 instead of 1 (its
        readme reports that bias 1 left the loss flat in its setting).
        """
        for name, module in self.named_layers():
            self._init_layer(name, module)

    def _init_layer(self, name: str, module: nn.Conv2d | nn.Linear) -> None:
        caffe = self.config.init == "caffe"
        one = 0.1 if caffe else 1.0
        biases = {"conv1": 0.0, "conv2": one, "conv3": 0.0, "conv4": one, "conv5": one,
                  "fc6": one, "fc7": one, "fc8": 0.0}
        std = 0.005 if caffe and name in ("fc6", "fc7") else 0.01
        init_normal(module, std, biases[name])

    def named_layers(self) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
        """The eight learned layers in order: conv1..conv5, fc6, fc7, fc8 (no fc8 after
        ``reset_classifier(0)``)."""
        convs = [(n, m) for n, m in self.features.named_children() if n.startswith("conv")]
        fcs = [(n, m) for n, m in self.fc.named_children() if n.startswith("fc")]
        head = [("fc8", self.fc8)] if isinstance(self.fc8, nn.Linear) else []
        return [*convs, *fcs, *head]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        y = self._features(x)  # (B, 256, 6, 6)
        self._check_features(x, y)
        return y

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.fc(torch.flatten(x, 1))  # (B, 4096): fc7 after ReLU (and dropout while training)
        return x if pre_logits else self.fc8(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _paper_config(*, lrn: bool, overlap_pool: bool, towers: int, dropout: float, activation: str,
                  lrn_alpha_over_n: bool) -> AlexNetConfig:
    if towers == 2:
        widths, groups = (96, 256, 384, 384, 256), (1, 2, 1, 2, 2)
    elif towers == 1:
        # The paper's one-GPU comparison net (section 3.2): half the kernels in conv1-conv4 on a single
        # tower, while "the last convolutional layer and the fully-connected layers" keep their size.
        widths, groups = (48, 128, 192, 192, 256), (1, 1, 1, 1, 1)
    else:
        raise BadOptionError(f"towers must be 1 or 2, got {towers!r}")
    return AlexNetConfig(widths=widths, groups=groups, lrn=bool(lrn), pool_kernel=3 if overlap_pool else 2,
                         dropout=float(dropout), activation=activation, lrn_alpha_over_n=bool(lrn_alpha_over_n))


@register_model(
    description="the paper's network: two towers (groups=2), LRN k=2, overlapping pooling, 224 crops",
    input_size=224,
    paper_notes="follows the paper; 224->55 by cuda-convnet's ceil rule; LRN alpha/n as in cuda-convnet2",
)
def alexnet(*, num_classes: int = 1000, lrn: bool = True, overlap_pool: bool = True, towers: int = 2,
            dropout: float = 0.5, activation: str = "relu", lrn_alpha_over_n: bool = True) -> AlexNet:
    """The paper's AlexNet. Options reproduce the paper's ablations:

    - ``lrn=False``: no local response normalisation (paper: +1.4% top-1 error);
    - ``overlap_pool=False``: 2x2 stride-2 pooling instead of 3x3 stride 2 (+0.4%);
    - ``towers=1``: the one-GPU net with half the kernels in conv1-conv4 (+1.7%);
    - ``dropout``: the rate on fc6/fc7 outputs (0 = off); ``activation``: "relu" or "tanh";
    - ``lrn_alpha_over_n=False``: the paper's LRN formula read literally (alpha not divided by n).
    """
    return AlexNet(num_classes, _paper_config(lrn=lrn, overlap_pool=overlap_pool, towers=towers,
                                              dropout=dropout, activation=activation,
                                              lrn_alpha_over_n=lrn_alpha_over_n))


@register_model(
    description="Caffe's bvlc_alexnet: 227 crops, LRN k=1, Caffe's init (biases 0.1, fc6/fc7 std 0.005)",
    input_size=227,
    paper_notes="departs: LRN k=1, bias 0.1, 227 input instead of 224 + ceil padding",
)
def alexnet_caffe(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    return AlexNet(num_classes, AlexNetConfig(lrn_k=1.0, ceil_pad_conv1=False, init="caffe", dropout=dropout))


@register_model(
    description="CaffeNet (bvlc_reference_caffenet): as alexnet_caffe with pooling before LRN",
    input_size=227,
    paper_notes="departs: conv -> ReLU -> pool -> LRN; otherwise as alexnet_caffe",
)
def caffenet(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    return AlexNet(num_classes, AlexNetConfig(lrn_k=1.0, ceil_pad_conv1=False, init="caffe",
                                              pool_before_lrn=True, dropout=dropout))
