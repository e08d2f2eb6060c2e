"""Building blocks the paper needs and torch does not ship in the paper's exact form."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import BadOptionError, UserError
from alexnet.models.meta import ModelMeta, meta_of


@torch.no_grad()
def init_normal(layer: nn.Conv2d | nn.Linear, std: float, bias: float = 0.0) -> None:
    """Weight ~ N(0, std), bias = ``bias``: the paper's kind of init. A layer on the meta device (a net built
    for its shapes only: option checks, ``alexnet models``) is left as it is: the meta device's ``normal_``
    imports about 900 modules on first use (1.5 s on every command that checks a model's options)."""
    if layer.weight.is_meta:
        return
    nn.init.normal_(layer.weight, mean=0.0, std=std)
    if layer.bias is not None:
        nn.init.constant_(layer.bias, bias)


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels (paper section 3.3).

    b[c] = a[c] / (k + alpha' * sum_{j=c-n/2}^{c+n/2} a[j]^2) ^ beta

    Interpretation of alpha (docs/PAPER.md, "LRN"): cuda-convnet2 (the authors' code), Caffe and
    ``torch.nn.LocalResponseNorm`` all use alpha' = alpha / n, i.e. the *mean* of the squares; the
    paper's formula read literally uses alpha' = alpha, the *sum*. We follow the authors' code by default
    (``alpha_over_n=True``); ``alpha_over_n=False`` gives the literal formula. With alpha = 1e-4 the two
    differ only in how strongly large activations are damped.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                 alpha_over_n: bool = True) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.alpha_over_n = alpha_over_n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha / self.size if self.alpha_over_n else self.alpha,
                                   self.beta, self.k)

    def extra_repr(self) -> str:
        return (f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
                f"alpha_over_n={self.alpha_over_n}")


def local_response_norm(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """``x[c] / (k + alpha * sum of x[j]^2 over the size channels around c) ** beta`` (zeros beyond the edges,
    the window placed as ``F.local_response_norm`` places it), for (N, C, ...) tensors in any memory format.

    Written as a sum of ``size`` channel-shifted slices of the zero-padded squares rather than torch's
    ``avg_pool3d`` over an added dimension: only pointwise ops, which torch.compile fuses into one kernel
    forward and one backward (the pooling form cost about a third of a compiled GPU step, and has no bf16
    CPU kernel), and in eager mode as fast or faster on a CPU. Half-precision inputs are summed in fp32."""
    if x.dim() < 3:
        raise ValueError(f"local_response_norm needs (N, C, ...) input, got shape {tuple(x.shape)}")
    a = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    c = a.shape[1]
    sq = F.pad(a * a, (0, 0) * (a.dim() - 2) + (size // 2, (size - 1) // 2))
    window = sq.narrow(1, 0, c)
    for i in range(1, size):
        window = window + sq.narrow(1, i, c)
    return (a / (window * alpha + k).pow(beta)).to(x.dtype)


GROUPED_CONV_IMPLS = ("cudnn", "nchw", "split")


class GroupedConv2d(nn.Conv2d):
    """A grouped convolution (the paper's two towers: conv2, conv4, conv5) with a choice of how it runs.

    - ``"cudnn"``: one convolution with ``groups`` (in whatever memory format the input has);
    - ``"nchw"``: the same in NCHW even inside a channels_last net (cuDNN slices channels for grouped
      convolutions in NHWC), converted back afterwards;
    - ``"split"``: one convolution per group on its slice of the channels, concatenated (as two GPUs did).
    All three compute the same function from the same parameters (same names, same shapes): the choice
    is a speed setting (:func:`set_grouped_conv`), not part of the model or its weights.
    """

    impl = "cudnn"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1 or self.impl == "cudnn":
            return super().forward(x)
        if self.impl == "nchw":
            nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            # the weight too: cuDNN runs NHWC when either operand is channels_last (as the net's weights are)
            y = self._conv_forward(x.contiguous(), self.weight.contiguous(), self.bias)
            return y.contiguous(memory_format=torch.channels_last) if nhwc else y
        xs = x.chunk(self.groups, dim=1)
        ws = self.weight.chunk(self.groups, dim=0)
        bs = self.bias.chunk(self.groups) if self.bias is not None else [None] * self.groups
        return torch.cat([F.conv2d(xi, wi, bi, self.stride, self.padding, self.dilation)
                          for xi, wi, bi in zip(xs, ws, bs, strict=True)], dim=1)


def set_grouped_conv(model: nn.Module, impl: str) -> nn.Module:
    """Run every :class:`GroupedConv2d` of ``model`` as ``impl`` (see there); returns ``model``."""
    if impl not in GROUPED_CONV_IMPLS:
        raise BadOptionError(f"grouped_conv must be one of {', '.join(GROUPED_CONV_IMPLS)}, got {impl!r}")
    for m in model.modules():
        if isinstance(m, GroupedConv2d):
            m.impl = impl
    return model


class CeilPad2d(nn.Module):
    """Zero-pad the right and bottom edges so that a following conv uses cuda-convnet's size rule.

    cuda-convnet computes a conv's output size as ``1 + ceil((W + 2p - F) / s)``: for conv1 (F=11, s=4,
    p=0) a 224x224 crop gives 55x55, exactly as if the image were zero-padded on the right and bottom to
    227x227 (which is what Caffe feeds instead). PyTorch floors (224 -> 54), so we add that padding here.
    A 227x227 input gets no padding and gives 55x55 too.
    """

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def extra_pad(self, size: int) -> int:
        out = 1 + math.ceil(max(size - self.kernel_size, 0) / self.stride)
        return max((out - 1) * self.stride + self.kernel_size - size, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.extra_pad(x.shape[-2]), self.extra_pad(x.shape[-1])
        if ph == 0 and pw == 0:
            return x
        return F.pad(x, (0, pw, 0, ph))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def make_activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    raise BadOptionError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")


def check_dropout(p: float) -> float:
    """A dropout rate in [0, 1) (1 would zero every activation), else a BadOptionError."""
    if not 0.0 <= p < 1.0:
        raise BadOptionError(f"dropout must be in [0, 1), got {p}")
    return p


class InputSizeError(UserError, ValueError):
    """A model was fed images of a size its classifier does not take (a ValueError, and a UserError so that
    the CLI reports it in one line): ``alexnet takes 3x224x224 input (...), got 3x256x256``.

    Built from plain values and worded only when shown, so that raising it inside torch.compile's trace
    needs no string formatting there (under ``fullgraph=True`` torch reports any exception raised in the
    trace as its own ``Unsupported: Observed exception``: check the input size before calling such a net)."""

    # args: (model name, input size, note after the size, shape given)

    def __str__(self) -> str:
        if len(self.args) != 4:
            return super().__str__()
        name, size, note, shape = self.args
        got = "x".join(map(str, shape[1:])) if len(shape) == 4 else \
            f"a tensor of shape {tuple(shape)} (a batch is N x 3 x H x W)"
        return f"{name} takes 3x{size}x{size} input{note}, got {got}"


class ClassifierHead:
    """timm's classifier API for a model whose last layer is a ``nn.Linear(num_features, num_classes)``.

    - ``num_features``: the width of the features fed to the classifier (``forward_head(x, pre_logits=True)``);
    - ``num_classes``: read from the classifier itself, so it stays right when the head is replaced by hand;
    - ``get_classifier()``: the last layer;
    - ``reset_classifier(num_classes)``: a freshly initialised last layer (the model's own init for it), in
      the same place, so the state-dict keys stay the same; ``num_classes=0`` puts ``nn.Identity`` there, as
      timm does: the model then returns its ``num_features`` pre-logits features (and the head's two keys
      are gone from the state dict). When the number of classes changes, ``model.meta.classes`` becomes
      None: the old class names no longer apply.

    A subclass names its last layer's attribute in ``head_name`` (or overrides ``get_classifier`` and
    ``_set_classifier``, and has an ``_init_layer(name, layer)`` for its own init); for the input check
    (:meth:`_check_features`) ``input_size`` and ``feature_shape`` (``None``: any size).
    """

    num_features: int
    input_size: int
    feature_shape: tuple[int, int, int] | None = None
    input_note: str = ""  # said after the input size in the wrong-size message
    pixel_std: tuple[float, float, float] | None = None  # the std its inputs are divided by (None: mean only)

    head_name: str = ""  # the attribute that holds the last layer ("fc8"), for the defaults below

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.head_name)

    def _set_classifier(self, head: nn.Module) -> None:
        setattr(self, self.head_name, head)

    def _init_classifier(self, layer: nn.Linear) -> None:
        """The model's own initialisation of its last layer: its ``_init_layer(name, layer)`` where it has
        one, else PyTorch's (as nn.Linear comes)."""
        init = getattr(self, "_init_layer", None)
        if init is not None:
            init(self.head_name, layer)

    @property
    def num_classes(self) -> int:
        head = self.get_classifier()
        if isinstance(head, nn.Identity):
            return 0
        outs = [m.out_features for m in head.modules() if isinstance(m, nn.Linear)]
        return outs[-1] if outs else int(getattr(head, "out_features", 0))

    @torch.no_grad()
    def reset_classifier(self, num_classes: int) -> None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise BadOptionError(f"num_classes must be an integer >= 0 (0: no classifier), got {num_classes!r}")
        before = self.num_classes
        if num_classes == 0:
            head: nn.Module = nn.Identity()
        else:
            old = [*self.get_classifier().parameters(), *self.parameters()]  # new head: same device and dtype
            like = {"device": old[0].device, "dtype": old[0].dtype} if old else {}
            head = nn.Linear(self.num_features, num_classes, **like)
            self._init_classifier(head)
        self._set_classifier(head)
        meta = getattr(self, "meta", None)
        if num_classes != before and isinstance(meta, ModelMeta):
            meta.classes = None  # the old class names no longer apply

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """``self.features(x)``; an input too small for the convolutions and poolings (torch's "Output size
        is too small") raises the same :class:`InputSizeError` as one the classifier cannot take. In eager
        mode only: under torch.compile / torch.export the shapes are guards and the error is torch's."""
        if torch.compiler.is_compiling():
            return self.features(x)
        try:
            return self.features(x)
        except RuntimeError:
            if x.dim() == 4 and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
                raise InputSizeError(meta_of(self).arch or type(self).__name__, self.input_size, self.input_note,
                                     tuple(x.shape)) from None
            raise

    def _check_features(self, x: torch.Tensor, features: torch.Tensor) -> None:
        """Refuse an input whose feature maps the classifier cannot take, naming the model's input size.
        Only static dimensions are compared: under torch.compile / torch.export this is a shape guard,
        not a branch on values."""
        if self.feature_shape is None:
            return
        if features.dim() != 4 or tuple(features.shape[1:]) != self.feature_shape:
            raise InputSizeError(meta_of(self).arch or type(self).__name__, self.input_size, self.input_note,
                                 tuple(x.shape))
