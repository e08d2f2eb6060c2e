"""Published weights declared as data, in the style of torchvision's ``Weights`` enums.

A record says where the file is (url and the sha256 prefix torch.hub checks), which model it is for,
how to preprocess images for it (``transforms()``) and what it measured (``meta``). With internet access::

    model = alexnet.create_model("alexnet_owt", weights="torchvision")
    # or: alexnet predict --weights torchvision photo.jpg

The download goes through ``torch.hub.load_state_dict_from_url`` (cached under ``$TORCH_HOME/hub``,
hash-checked, ``weights_only=True``).
"""

from __future__ import annotations

import contextlib
import sys
import urllib.error
from dataclasses import dataclass, field

import torch

from alexnet.errors import UserError
from alexnet.weights.classes import imagenet_classes
from alexnet.weights.preprocess import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, Preprocess


@dataclass(frozen=True)
class WeightsRecord:
    """Where a set of published weights lives and what it is."""

    name: str
    arch: str
    url: str
    # torch.hub's check: the file's sha256 starts with the hex digits after the last '-' of its name.
    # torchvision publishes only this prefix of the sha256 (in the file name), so it is all we can check.
    sha256_prefix: str
    preprocess: dict
    info: dict = field(default_factory=dict)  # everything in ``meta`` but the class list
    class_list: str = "imagenet"  # read on first use (package data), not at import

    def transforms(self) -> Preprocess:
        """The preprocessing these weights expect: a callable image -> float32 (3, 224, 224)."""
        return Preprocess.from_metadata(self.preprocess)

    @property
    def meta(self) -> dict:
        """torchvision-style metadata: ``classes`` ({index, wnid, name}), ``categories`` (names),
        ``metrics``, ``num_params``, ``recipe``, ..."""
        classes = imagenet_classes() if self.class_list == "imagenet" else []
        return {**self.info, "classes": classes, "categories": [c["name"] for c in classes]}

    @property
    def categories(self) -> list[str]:
        return self.meta["categories"]

    def get_state_dict(self, *, progress: bool = True, model_dir: str | None = None) -> dict:
        """Download (once; then from torch.hub's cache) and load the state dict, never unpickling code."""
        try:
            # torch.hub announces a download on stdout; it goes to stderr, with the progress bar, so that
            # the stdout of e.g. `alexnet predict --json` stays the answer alone.
            with contextlib.redirect_stdout(sys.stderr):
                return torch.hub.load_state_dict_from_url(self.url, model_dir=model_dir, map_location="cpu",
                                                          progress=progress, check_hash=True, weights_only=True)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise UserError(f"could not download the {self.name} weights from {self.url}: {reason}") from None
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "hash mismatch"
            raise UserError(f"the downloaded {self.name} weights are not the published file: {first}") from None

    def to_weights(self, *, progress: bool = True):
        """The record's weights as a :class:`~alexnet.weights.file.WeightsFile`."""
        from alexnet.weights.file import WeightsFile

        state = self.get_state_dict(progress=progress)
        classes = self.meta["classes"]
        return WeightsFile(arch=self.arch, state_dict=state, num_classes=len(classes), classes=classes,
                           preprocess=dict(self.preprocess),
                           extra={"record": self.name, "url": self.url, "metrics": self.info.get("metrics", {})})


TORCHVISION = WeightsRecord(
    name="torchvision",
    arch="alexnet_owt",
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    sha256_prefix="7be5be79",
    preprocess={"resize": 256, "crop_size": 224, "mean_rgb": list(IMAGENET_MEAN_RGB),
                "std_rgb": list(IMAGENET_STD_RGB), "mean": "channel", "warp": False},
    info={
        "num_params": 61_100_840,
        "min_size": (63, 63),
        "recipe": "https://github.com/pytorch/vision/tree/main/references/classification#alexnet-and-vgg",
        # torchvision's published numbers (ImageNet-1K val, centre 224 crop of the 256 resize), in its
        # Weights.meta's form: accuracy in percent, unlike the fractions everywhere else in this package
        "metrics": {"ImageNet-1K": {"acc@1": 56.522, "acc@5": 79.066}},
        "gflops": 0.71,
        "file_size_mb": 233.087,
        "docs": "torchvision's AlexNet_Weights.IMAGENET1K_V1: the one-weird-trick AlexNet trained with "
                "torchvision's reference recipe, state dict identical to our alexnet_owt.",
    },
)

RECORDS: dict[str, WeightsRecord] = {
    "torchvision": TORCHVISION,
    "alexnet_owt.torchvision": TORCHVISION,
    "IMAGENET1K_V1": TORCHVISION,
}


def get_record(name: str) -> WeightsRecord:
    try:
        return RECORDS[name]
    except KeyError:
        raise UserError(f"unknown weights {name!r}; published ones: {', '.join(sorted(set(RECORDS)))}") from None
