"""Model registry: name -> builder, in the style of timm's ``create_model`` / ``list_models``."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from alexnet.errors import BadOptionError, UnknownModelError
from alexnet.models.meta import ModelMeta


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model without building it."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    input_size: int  # square crop the model is meant for (224 or 227 for ImageNet models, 32 for CIFAR)
    default_num_classes: int = 1000
    # Pixel normalisation the model expects, in 0..255 units. ``None`` std = the paper's: subtract the
    # mean only (cuda-convnet and Caffe feed raw 0..255 minus mean; the paper's N(0, 0.01) init assumes it).
    pixel_std: tuple[float, float, float] | None = None
    paper_notes: str = ""
    options: tuple[str, ...] = field(default=())


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(*, description: str, input_size: int, default_num_classes: int = 1000,
                   pixel_std: tuple[float, float, float] | None = None, paper_notes: str = ""):
    """Decorator registering a builder ``fn(*, num_classes, **options) -> nn.Module`` under its name."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        params = inspect.signature(fn).parameters
        options = tuple(p for p in params if p != "num_classes")
        _REGISTRY[fn.__name__] = ModelInfo(fn.__name__, fn, description, input_size, default_num_classes,
                                           pixel_std, paper_notes, options)
        return fn

    return wrap


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _coerce_option(model: str, key: str, value, annotation):
    """A model option as the type its builder declares (``bool``, ``int``, ``float``, ``str``), from a
    value or its text ("false", "0.3"); anything else is a BadOptionError (``lrn="maybe"`` must not
    build a net with LRN, ``dropout="abc"`` must not end in a traceback)."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    bad = BadOptionError(f"model {model!r}: option {key} must be "
                         f"{ {'bool': 'true or false', 'int': 'an integer', 'float': 'a number'}.get(kind, kind)}, "
                         f"got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise bad
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise bad
        if kind == "int" and isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number) or (kind == "int" and not number.is_integer()):
            raise bad
        return int(number) if kind == "int" else number
    if kind == "str" and not isinstance(value, str):
        raise bad
    return value


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int | None = None, **options) -> nn.Module:
    """Build a registered model, e.g. ``create_model("alexnet", num_classes=10, lrn=False)``, freshly
    initialised; ``model.meta`` (:class:`~alexnet.models.meta.ModelMeta`) records its name and options.
    (``alexnet.create_model(name, weights=...)`` builds one with pretrained weights.)

    Unknown names and options, and options of the wrong type or out of range, raise
    :class:`UnknownModelError` / :class:`BadOptionError` (both :class:`~alexnet.errors.UserError`), so that
    the CLI can report them in one line.

    Every model has timm's head API: ``num_features``, ``get_classifier()``, ``reset_classifier(n)`` (see
    :class:`~alexnet.models.layers.ClassifierHead`); a model with no classifier is
    ``create_model(name).reset_classifier(0)`` (``num_classes`` here is at least 1: weights files record
    a classifier).
    """
    info = model_info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise BadOptionError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(info.options) or 'none'}")
    params = inspect.signature(info.builder).parameters
    options = {k: _coerce_option(name, k, v, params[k].annotation) for k, v in options.items()}
    if num_classes is None:
        num_classes = info.default_num_classes
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise BadOptionError(f"num_classes must be a positive integer, got {num_classes!r}")
    try:
        model = info.builder(num_classes=num_classes, **options)
    except BadOptionError as e:  # an option's value out of range, e.g. dropout=2.0: named with its model
        raise BadOptionError(f"model {name!r}: option {str(e).splitlines()[0]}") from None
    except ValueError as e:  # a torch layer refusing an option's value: the same one-line error
        raise BadOptionError(f"model {name!r}: {str(e).splitlines()[0]}") from e
    model.meta = ModelMeta(arch=name, options=dict(options))  # checkpoints and weights files record it
    return model


def check_input_size(model: nn.Module, size: int) -> None:
    """Whether ``model`` takes ``size`` x ``size`` images: one image of zeros through it in eval mode, on
    its device, without gradients (milliseconds); a size it does not take raises
    :class:`~alexnet.models.layers.InputSizeError` (a UserError naming the size it takes). The model's
    training mode is restored."""
    import torch

    param = next(model.parameters(), None)
    was = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size, device=None if param is None else param.device,
                                     dtype=None if param is None else param.dtype))
    finally:
        model.train(was)
