"""``model.meta``: what a model is and what it was trained for, in one object.

Every model built by :func:`~alexnet.models.create_model` carries one: its registered ``arch`` and
``options``. :func:`alexnet.load` (or ``alexnet.create_model(name, weights=...)``) fills in the rest from
the weights: the ``classes``, how to ``preprocess`` an image for it, and the weights' ``source``. Code that
needs these reads them through :func:`meta_of`, which also answers for a foreign ``nn.Module``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn


@dataclass
class ModelMeta:
    arch: str | None = None  # the registered name (None: a model we did not build)
    options: dict = field(default_factory=dict)  # the builder's options, e.g. {"lrn": False}
    classes: list[dict] | None = None  # [{"index", "wnid", "name"}, ...] once weights are loaded
    preprocess: Any = None  # an alexnet.weights.Preprocess once weights are loaded
    source: str | None = None  # where the weights came from


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``nn.DataParallel``, ``DistributedDataParallel`` and ``torch.compile``'s wrapper."""
    for _ in range(8):  # wrappers of wrappers, not a cycle
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            inner = model.module
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def meta_of(model: nn.Module) -> ModelMeta:
    """``model.meta``, or an empty :class:`ModelMeta` for a model without one (e.g. torchvision's). A model
    wrapped for data parallelism or compiled answers for the model inside (:func:`unwrap`).

    A class list that no longer matches the model's outputs (its last layer replaced by hand, e.g.
    ``model.fc8 = nn.Linear(4096, 5)``) is left out of the answer (a copy with ``classes=None``): those
    names are not the new outputs' (``reset_classifier`` clears them itself)."""
    meta = getattr(model, "meta", None)  # one set on the wrapper itself wins
    model = unwrap(model)
    if not isinstance(meta, ModelMeta):
        meta = getattr(model, "meta", None)
    if not isinstance(meta, ModelMeta):
        return ModelMeta()
    n = getattr(model, "num_classes", None)
    if meta.classes and isinstance(n, int) and len(meta.classes) != n:
        return replace(meta, classes=None)
    return meta
