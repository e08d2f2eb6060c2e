"""The paper's preprocessing, done once per image: decode, RGB, shorter side to 256, centre 256x256.

"We down-sampled the images to a fixed resolution of 256x256: given a rectangular image, we first
rescaled the image such that the shorter side was of length 256, and then cropped out the central
256x256 patch" (Section 2). ``warp=True`` is Caffe's variant instead: squash the whole image to NxN.

Interpretations (the paper does not say):
- Resampling: bilinear with antialiasing (PIL's filter support widens with the reduction), the same as
  ``torchvision.transforms.Resize`` on PIL images, the usual ImageNet pipeline.
- The rescale and the crop are done in one step (PIL ``resize(box=...)`` over the centre square): the
  result equals rescale-then-crop up to sub-pixel rounding of the crop offset, without resampling
  the parts that the crop throws away.
- Large JPEGs are decoded at a reduced DCT scale (``Image.draft``) that keeps at least twice the output
  resolution, then resampled as above: the DCT scaling is itself an area average, so the result stays
  antialiased, and a 2400x1632 photo decodes several times faster.
- EXIF orientation is ignored, as in torchvision's ImageFolder loader and Caffe's convert_imageset.
- CMYK, grayscale, palette and alpha images are converted to RGB (PIL ``convert``); real ImageNet holds
  all of these, and a PNG saved as ``.JPEG`` (the format is read from the content, not the name).
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

RESAMPLE = Image.Resampling.BILINEAR
DRAFT_MARGIN = 2  # decode JPEGs at no less than this multiple of the output size


DEFAULT_MAX_IMAGE_PIXELS = 250_000_000


def max_image_pixels() -> int:
    """The most pixels any reader of this project decodes from one image (after JPEG's reduced-scale
    decoding): 250 million (750 MB of RGB), or ``ALEXNET_MAX_IMAGE_PIXELS``. A larger image, a
    "decompression bomb" or not, is an unreadable file: skipped by prepare, refused by predict."""
    value = os.environ.get("ALEXNET_MAX_IMAGE_PIXELS", "")
    try:
        return int(value) if value.strip() else DEFAULT_MAX_IMAGE_PIXELS
    except ValueError:
        return DEFAULT_MAX_IMAGE_PIXELS


def check_pixels(w: int, h: int) -> str | None:
    """Why an image of ``w x h`` decoded pixels is too large, or None."""
    limit = max_image_pixels()
    if w * h > limit:
        return f"image too large: {w}x{h} pixels to decode, over the limit of {limit:,} (ALEXNET_MAX_IMAGE_PIXELS)"
    return None


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, the same for prepare and predict: grayscale replicated, CMYK
    converted, 16-bit and float images scaled (not clipped) to 0..255, alpha composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if a.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(a * (255.0 / top), 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


class BadImage(Exception):
    """A file that cannot be decoded; its message is the reason listed in ``meta.json`` "skipped"."""


def decode(data: bytes) -> Image.Image:
    """Open an image from its bytes (any format PIL reads), or raise :class:`BadImage` with a reason."""
    if not data:
        raise BadImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise BadImage(f"image too large: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise BadImage(f"cannot decode: {e}") from None


def preprocess(data: bytes, size: int = 256, warp: bool = False) -> np.ndarray:
    """Bytes of any image -> ``(size, size, 3)`` uint8 RGB: shorter side to ``size``, centre crop.

    With ``warp=True`` the whole image is squashed to ``size x size`` (Caffe's ``convert_imageset``).
    Raises :class:`BadImage` (with the reason) for empty, truncated or non-image data.
    """
    img = decode(data)
    try:
        w, h = img.size
        if w < 1 or h < 1:
            raise BadImage("image has no pixels")
        if img.format == "JPEG":
            if warp:
                want = (min(w, DRAFT_MARGIN * size), min(h, DRAFT_MARGIN * size))
            else:
                s = DRAFT_MARGIN * size / min(w, h)
                want = (min(w, int(np.ceil(w * s))), min(h, int(np.ceil(h * s))))
            img.draft(None, want)  # picks the largest DCT reduction that keeps >= want
            w, h = img.size
        too_large = check_pixels(w, h)
        if too_large:
            raise BadImage(too_large)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Palette images with transparency": converted below
            img.load()
            img = to_rgb(img)
        if warp:
            box = (0.0, 0.0, float(w), float(h))
        else:
            side = float(min(w, h))
            left, top = (w - side) / 2.0, (h - side) / 2.0
            box = (left, top, left + side, top + side)
        out = img.resize((size, size), RESAMPLE, box=box)
        arr = np.asarray(out, dtype=np.uint8)
    except BadImage:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason:
            reason = f"truncated: {reason}"
        raise BadImage(f"cannot decode: {reason}") from None
    finally:
        img.close()
    if arr.shape != (size, size, 3):  # pragma: no cover (PIL always returns this for RGB)
        raise BadImage(f"decoded to an unexpected shape {arr.shape}")
    return arr


def encode_jpeg(arr: np.ndarray, quality: int) -> bytes:
    """``(S, S, 3)`` uint8 -> JPEG bytes (baseline, 4:2:0 chroma, optimised Huffman tables)."""
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()
