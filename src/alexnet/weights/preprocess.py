"""Reading any image and turning it into the crops a set of weights expects.

The pipeline is the paper's test-time one (section 2 and 4.1), shared by ``predict``, ``neighbors`` and
every weights record's ``transforms()``:

    any image Pillow reads -> RGB uint8 -> shorter side to ``resize`` (256), central ``resize`` square
    (:mod:`alexnet.data.images`: the same pixels ``prepare_dataset`` stores for the same file)
    -> centre crop (or the paper's 10 crops, :mod:`alexnet.data.crops`) of ``crop_size``
    -> minus the weights' mean (the mean image's pixels under the crop, or a per-channel mean)
    -> divided by the std for weights trained that way (torchvision's) -> float32 (3, C, C).

Pixels stay in 0..255 units: the paper's models take raw pixels minus the mean; torchvision's
normalisation ``(x/255 - m) / s`` equals ``(x - 255 m) / (255 s)``, which is what we store for it.
Caffe's weights were trained on images *warped* to 256x256 (``warp=True``) instead of shorter-side resized.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.data.crops import center_offset, ten_crop_offsets
from alexnet.data.images import BadImage, open_rgb, square, to_rgb
from alexnet.errors import UserError

# ImageNet's mean and std in 0..255 units (torchvision's 0.485/0.456/0.406 and 0.229/0.224/0.225 x 255).
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)


def load_image(source, *, min_size: int | None = None, warp: bool = False) -> Image.Image:
    """Open an image as 8-bit RGB with the project's rules (:mod:`alexnet.data.images`: EXIF orientation
    applied, alpha on white, 16-bit scaled), the same as ``prepare``.

    ``source``: a path, a PIL image, a uint8 array (H, W, 3) / (H, W), or a tensor as torchvision holds
    images (C, H, W), uint8 or floating point in 0..1. With ``min_size``, large JPEGs
    are decoded at a reduced scale that keeps the shorter side >= 2 ``min_size`` (as ``prepare`` does; with
    ``warp``, its rule for images it will squash).
    Unreadable files raise :class:`UserError` with the reason in one line.
    """
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, torch.Tensor):
        source = _tensor_to_hwc(source)
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (1, 3, 4)):
            raise UserError(f"an image array must be uint8 (H, W), (H, W, 3) or (H, W, 4), got {source.dtype} {source.shape}")
        return to_rgb(Image.fromarray(source.squeeze(2) if source.ndim == 3 and source.shape[2] == 1 else source))
    path = Path(source)
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        return open_rgb(path, size=min_size, warp=warp)
    except BadImage as e:
        raise UserError(f"{path}: {e}") from None


def _tensor_to_hwc(t: torch.Tensor) -> np.ndarray:
    """A torchvision image tensor (C, H, W) with C in 1, 3, 4, uint8 or float in 0..1, as a uint8 HWC array."""
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise UserError(f"an image tensor must be (C, H, W) with 1, 3 or 4 channels (torchvision's layout), "
                        f"got shape {tuple(t.shape)}")
    t = t.detach().cpu()
    if t.is_floating_point():
        if t.numel() and not (bool(torch.isfinite(t).all()) and 0 <= float(t.min()) and float(t.max()) <= 1):
            raise UserError("a floating-point image tensor must hold values in 0..1 (as torchvision's "
                            "ToDtype(scale=True) gives them)")
        t = (t * 255).round().to(torch.uint8)
    elif t.dtype != torch.uint8:
        raise UserError(f"an image tensor must be uint8 or floating point in 0..1, got {t.dtype}")
    return t.permute(1, 2, 0).contiguous().numpy()


def crop_offsets(size: int, crop: int, ten_crop: bool) -> list[tuple[int, int]]:
    """(top, left) of the centre crop, or of the paper's five (:mod:`alexnet.data.crops`'s order)."""
    if crop > size:
        raise UserError(f"crop {crop} is larger than the {size}x{size} image")
    if not ten_crop:
        c = center_offset(size, crop)
        return [(c, c)]
    return ten_crop_offsets(size, crop)


MAX_RESIZE = 4096
"""The largest image side a weights file's preprocessing may ask for (nothing larger is allocated)."""


def check_preprocess_metadata(meta: dict, mean_image: np.ndarray | None = None) -> None:
    """Refuse (UserError, one line) preprocessing metadata outside what an AlexNet can have: a weights
    file is user input, and ``resize: 100000`` would otherwise allocate until the machine gives out."""
    def bad(what: str):
        raise UserError(f"weights metadata: preprocess.{what}")

    def number_list(v, positive=False) -> bool:  # 0..255 pixel units: a mean in -1000..1000, a std in 1e-3..1e4
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        if a.shape != (3,) or not bool(np.isfinite(a).all()):
            return False
        return bool(((a >= 1e-3) & (a <= 1e4)).all()) if positive else bool((np.abs(a) <= 1000).all())

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    resize = meta.get("resize", 256)
    if not is_int(resize) or not 8 <= resize <= MAX_RESIZE:
        bad(f"resize must be an integer in 8..{MAX_RESIZE}, got {resize!r}")
    crop = meta.get("crop_size")
    if crop is not None and (not is_int(crop) or not 1 <= crop <= resize):
        bad(f"crop_size must be an integer in 1..resize ({resize}), got {crop!r}")
    if meta.get("mean_rgb") is not None and not number_list(meta["mean_rgb"]):
        bad("mean_rgb must be 3 numbers in -1000..1000 (0..255 pixel units)")
    if meta.get("std_rgb") is not None and not number_list(meta["std_rgb"], positive=True):
        bad("std_rgb must be 3 numbers in 0.001..10000 (0..255 pixel units), or null")
    if meta.get("mean", "image") not in ("image", "channel"):
        bad(f"mean must be 'image' or 'channel', got {meta.get('mean')!r}")
    if not isinstance(meta.get("warp", False), bool):
        bad(f"warp must be true or false, got {meta.get('warp')!r}")
    if mean_image is not None:
        shape = tuple(np.shape(mean_image))
        values = np.asarray(mean_image, np.float64)
        if shape != (resize, resize, 3) or not np.isfinite(values).all() or np.abs(values).max(initial=0) > 1000:
            bad(f"the mean image must be {resize}x{resize}x3 numbers in -1000..1000, got shape {shape}")


@dataclass
class Preprocess:
    """How images must be prepared for a set of weights (stored in the weights file's metadata).

    Calling it on an image (path, PIL image or uint8 array) gives the float32 (3, C, C) centre crop, so
    ``model(preprocess(img)[None])`` classifies one image, like torchvision's ``weights.transforms()``.
    """

    resize: int = 256
    crop_size: int = 224
    mean_rgb: tuple[float, float, float] = IMAGENET_MEAN_RGB
    std_rgb: tuple[float, float, float] | None = None
    mean_image: np.ndarray | None = field(default=None, repr=False)  # (S, S, 3) float32 RGB, 0..255
    use_mean_image: bool = True  # the metadata's "mean": "image" (else "channel")
    warp: bool = False
    _normalizer_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __eq__(self, other: object) -> bool:  # the dataclass's own == fails on the mean images (arrays)
        if not isinstance(other, Preprocess):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.compare and not (np.array_equal(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray)
                                  else a == b):
                return False
        return True

    __hash__ = None  # mutable, like the dataclass it is

    # --- metadata round trip -------------------------------------------------------------------------
    @classmethod
    def from_metadata(cls, meta: dict | None, mean_image: np.ndarray | None = None, *,
                      crop_size: int | None = None, pixel_std=None) -> Preprocess:
        meta = dict(meta or {})
        check_preprocess_metadata(meta, mean_image)
        std = meta.get("std_rgb", pixel_std)
        mean_rgb = meta.get("mean_rgb")
        if mean_rgb is None:
            mean_rgb = (np.asarray(mean_image, np.float64).reshape(-1, 3).mean(0).tolist()
                        if mean_image is not None else IMAGENET_MEAN_RGB)
        return cls(resize=int(meta.get("resize", 256)), crop_size=int(meta.get("crop_size") or crop_size or 224),
                   mean_rgb=tuple(float(v) for v in mean_rgb),
                   std_rgb=None if std is None else tuple(float(v) for v in std),
                   mean_image=None if mean_image is None else np.asarray(mean_image, dtype=np.float32),
                   use_mean_image=meta.get("mean", "image" if mean_image is not None else "channel") == "image",
                   warp=bool(meta.get("warp", False)))

    def to_metadata(self) -> dict:
        return {"resize": self.resize, "crop_size": self.crop_size, "mean_rgb": list(self.mean_rgb),
                "std_rgb": None if self.std_rgb is None else list(self.std_rgb),
                "mean": "image" if self.uses_mean_image else "channel", "warp": self.warp}

    @property
    def uses_mean_image(self) -> bool:
        return self.use_mean_image and self.mean_image is not None

    # --- images -> squares -> crops --------------------------------------------------------------------
    def square(self, image) -> np.ndarray:
        """The ``resize`` x ``resize`` uint8 RGB square of an image, as ``prepare_dataset`` stores it."""
        img = load_image(image, min_size=self.resize, warp=self.warp)
        try:
            return square(img, self.resize, self.warp)
        except BadImage as e:  # a strip too thin to scale: unreadable, as load_image says of the others
            name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "image"
            raise UserError(f"{name}: {e}") from None

    def _normalizers(self, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mean to subtract, (3, size, size) or (3, 1, 1), and the std to divide by, (3, 1, 1) or None,
        float32 on ``device``. Made once per (size, device): building them is a host-to-device copy, which
        on a GPU would stall every batch of an evaluation."""
        key = (size, str(device))
        if key not in self._normalizer_cache:
            if not self.uses_mean_image:
                m = torch.tensor(self.mean_rgb, dtype=torch.float32, device=device).view(3, 1, 1)
            else:
                m = torch.from_numpy(np.ascontiguousarray(self.mean_image)).to(device).permute(2, 0, 1).float()
                if m.shape[-1] != size or m.shape[-2] != size:  # a mean image of another size: resample it
                    m = torch.nn.functional.interpolate(m[None], size=(size, size), mode="bilinear",
                                                        align_corners=False, antialias=True)[0]
            std = None if self.std_rgb is None else torch.tensor(
                self.std_rgb, dtype=torch.float32, device=device).view(3, 1, 1)
            self._normalizer_cache[key] = (m, std)
        return self._normalizer_cache[key]

    def crops(self, squares: torch.Tensor, *, ten_crop: bool = False) -> torch.Tensor:
        """Normalised crops of a batch of squares.

        ``squares``: uint8 (B, S, S, 3) (HWC, as stored) or (B, 3, S, S). Returns float32 (B, 3, C, C), or
        with ``ten_crop`` (B, 10, 3, C, C): the four corners and the centre, then their mirror images.
        """
        if squares.ndim != 4:
            raise ValueError(f"expected a batch (B, S, S, 3), got shape {tuple(squares.shape)}")
        x = squares.permute(0, 3, 1, 2) if squares.shape[-1] == 3 and squares.shape[1] != 3 else squares
        x = x.float()  # (B, 3, S, S)
        size, c = x.shape[-1], self.crop_size
        if x.shape[-2] != size:
            raise ValueError(f"expected square images, got {tuple(x.shape[-2:])}")
        mean, std = self._normalizers(size, x.device)
        out = []
        for top, left in crop_offsets(size, c, ten_crop):
            m = mean if mean.shape[-1] == 1 else mean[:, top:top + c, left:left + c]
            p = x[:, :, top:top + c, left:left + c] - m  # Caffe subtracts the mean under the crop, then mirrors
            out.append(p if std is None else p / std)
        if not ten_crop:
            return out[0].contiguous()  # (B, 3, C, C)
        out += [p.flip(-1) for p in out]
        return torch.stack(out, dim=1).contiguous()  # (B, 10, 3, C, C)

    def __call__(self, image) -> torch.Tensor:
        sq = torch.from_numpy(self.square(image))[None]
        return self.crops(sq)[0]  # (3, C, C)
