"""Images in: any file Pillow reads -> 8-bit RGB -> the square the paper's network sees.

One module for every reader (``prepare``, ``predict``, ``neighbors``, the experiments' image sets), so the
same file gives the same pixels everywhere. The paper (section 2): "given a rectangular image, we first
rescaled the image such that the shorter side was of length 256, and then cropped out the central
256x256 patch". ``warp=True`` is Caffe's variant instead: squash the whole image to NxN.

The rules, where the paper says nothing (docs/PAPER.md, "Data"):
- The format is read from the content, not the name (real ImageNet holds PNGs named ``.JPEG``).
- EXIF orientation is applied: a phone photo is upright. torchvision's ImageFolder and Caffe's
  convert_imageset ignore it; ImageNet's own photos almost never carry a rotation, so the paper's data
  is unaffected.
- Colour: grayscale is replicated, CMYK converted by Pillow, palette images expanded, alpha (and a
  palette's transparency) composited on white, 16-bit and float images scaled (not clipped) to 0..255.
- Geometry: the shorter side to N with Pillow's bilinear filter (antialiased: its support widens with the
  reduction), then the central NxN square, offsets rounded: exactly torchvision's ``Resize(N)`` +
  ``CenterCrop(N)`` on a PIL image, the usual ImageNet pipeline (tested).
- Large JPEGs are decoded at a reduced DCT scale (``Image.draft``) that keeps at least twice the output
  size, then resampled as above: the DCT scaling is itself an area average, so the result stays
  antialiased (it differs from a full decode by about 1/255 per pixel), and a 4000x3000 photo decodes
  many times faster with a fraction of the memory. Only images whose shorter side is at least 4N (1024
  for 256) are affected.
- At most ``ALEXNET_MAX_IMAGE_PIXELS`` (250 million) pixels are decoded from one image, after draft, and
  at most as many once its shorter side is scaled (a 1x100000 strip would be 256x25,600,000).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from alexnet.data.crops import center_offset
from alexnet.errors import UserError

RESAMPLE = Image.Resampling.BILINEAR
DRAFT_MARGIN = 2  # decode JPEGs at no less than this multiple of the output size


DEFAULT_MAX_IMAGE_PIXELS = 250_000_000


def max_image_pixels() -> int:
    """The most pixels any reader of this project decodes from one image (after JPEG's reduced-scale
    decoding): 250 million (750 MB of RGB), or ``ALEXNET_MAX_IMAGE_PIXELS``. A larger image, a
    "decompression bomb" or not, is an unreadable file: skipped by prepare, refused by predict."""
    value = os.environ.get("ALEXNET_MAX_IMAGE_PIXELS", "").strip()
    if not value:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(value.replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:  # a typo must not quietly become the default, nor every image "too large"
        raise UserError(f"ALEXNET_MAX_IMAGE_PIXELS must be a whole number of pixels >= 1, got {value!r}")
    return limit


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
    """A file that cannot be decoded; its message is the reason (listed in ``meta.json`` "skipped")."""


@contextlib.contextmanager
def _our_pixel_limit():
    # Pillow refuses images over ~179 MP as "decompression bombs" before a JPEG can be decoded at a reduced
    # scale; our own limit (check_pixels, after draft) replaces it.
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def open_rgb(source: bytes | str | os.PathLike, *, size: int | None = None, warp: bool = False) -> Image.Image:
    """Decode an image (its bytes, or a path) to 8-bit RGB with the rules above, or raise :class:`BadImage`.

    With ``size``, a large JPEG is decoded at the reduced scale that keeps at least ``2 * size`` on the
    side(s) that :func:`square` will resample (``warp``: both sides; else the shorter one).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise BadImage("empty file")
        source = io.BytesIO(source)
    elif os.path.isfile(source) and os.path.getsize(source) == 0:  # as prepare, which reads bytes, says it
        raise BadImage("empty file")
    try:
        with _our_pixel_limit(), Image.open(source) as img:
            w, h = img.size
            if w < 1 or h < 1:
                raise BadImage("image has no pixels")
            if size and img.format == "JPEG":
                if warp:
                    want = (min(w, DRAFT_MARGIN * size), min(h, DRAFT_MARGIN * size))
                else:
                    s = DRAFT_MARGIN * size / min(w, h)
                    want = (min(w, math.ceil(w * s)), min(h, math.ceil(h * s)))
                img.draft(None, want)  # picks the largest DCT reduction that keeps >= want
            too_large = check_pixels(*img.size)
            if too_large:
                raise BadImage(too_large)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Palette images with transparency": converted below
                img.load()
            ImageOps.exif_transpose(img, in_place=True)  # no copy when there is nothing to turn
            return to_rgb(img)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, Image.DecompressionBombError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "truncated" in reason and not reason.startswith("truncated"):
            reason = f"truncated: {reason}"
        raise BadImage(f"cannot decode: {reason}") from None


def square(img: Image.Image, size: int, warp: bool = False) -> np.ndarray:
    """An RGB image -> ``(size, size, 3)`` uint8: the shorter side to ``size``, then the central square
    (torchvision's ``Resize(size)`` + ``CenterCrop(size)``), or with ``warp`` the whole image squashed."""
    w, h = img.size
    if warp:
        out = img.resize((size, size), RESAMPLE)
    else:
        scaled = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        if scaled[0] * scaled[1] > max_image_pixels():  # a thin strip (1x100000 -> 256x25,600,000)
            raise BadImage(f"image too thin: {w}x{h} would be {scaled[0]}x{scaled[1]} pixels with its shorter "
                           f"side scaled to {size}, over the limit of {max_image_pixels():,} "
                           "(ALEXNET_MAX_IMAGE_PIXELS)")
        if min(w, h) != size:  # torchvision's Resize(int): the longer side truncated, as int() does
            img = img.resize(scaled, RESAMPLE)
        w, h = img.size
        left, top = center_offset(w, size), center_offset(h, size)
        out = img.crop((left, top, left + size, top + size))
    arr = np.array(out, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only arrays)
    if arr.shape != (size, size, 3):  # pragma: no cover (Pillow always returns this for RGB)
        raise BadImage(f"decoded to an unexpected shape {arr.shape}")
    return arr


def preprocess(data: bytes, size: int = 256, warp: bool = False) -> np.ndarray:
    """Bytes of any image -> its ``(size, size, 3)`` uint8 RGB square (what ``prepare`` stores).

    Raises :class:`BadImage` (with the reason) for empty, truncated, too large or non-image data.
    """
    img = open_rgb(data, size=size, warp=warp)
    try:
        return square(img, size, warp)
    except (OSError, ValueError, MemoryError) as e:  # pragma: no cover (decoded above)
        raise BadImage(f"cannot decode: {e}") from None
    finally:
        img.close()


def encode_jpeg(arr: np.ndarray, quality: int) -> bytes:
    """``(S, S, 3)`` uint8 -> JPEG bytes (baseline, 4:2:0 chroma, optimised Huffman tables)."""
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()
