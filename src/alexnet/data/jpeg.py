"""JPEG decoding for the loader: TorchCodec where it works, else ``torchvision.io`` (libjpeg-turbo on CPU,
nvJPEG on CUDA, both batched and outside the GIL).

torchvision 0.29 deprecates its image decoders in favour of TorchCodec (>= 0.16), which decodes the
same pixels (the same libjpeg-turbo; checked by the tests). Older stacks, still common on GPU machines
(torchvision 0.26, no TorchCodec), keep torchvision's decoder. The choice is made once per device type,
by decoding a small JPEG: a TorchCodec that is installed but built for another torch, or without CUDA,
falls back instead of failing. ``ALEXNET_JPEG_DECODER=torchvision`` (or ``torchcodec``) forces one.
"""

from __future__ import annotations

import io
import os
import warnings

import torch

from alexnet.errors import BadOptionError

DECODERS = ("torchcodec", "torchvision")
_chosen: dict[str, str] = {}  # device type -> decoder that worked there
_forced: str | None = None

# torchvision's "deprecated, use TorchCodec" warning, on every call: we do, where it works. Set once
# here, not per call: catch_warnings is not thread-safe and the loader decodes from several threads.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


def _torchvision(data, device):
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def _torchcodec(data, device):
    from torchcodec.decoders import decode_jpeg

    return decode_jpeg(data, mode="RGB", device=device)


_IMPL = {"torchcodec": _torchcodec, "torchvision": _torchvision}


def _probe_jpeg() -> torch.Tensor:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 40, 10)).save(buf, "JPEG", quality=95)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


def _works(name: str, device: torch.device) -> bool:
    try:
        out = _IMPL[name]([_probe_jpeg()], device)
    except Exception:  # not installed, built for another torch, no CUDA support, ...: try the next one
        return False
    return len(out) == 1 and tuple(out[0].shape) == (3, 8, 16) and abs(int(out[0][0, 4, 8]) - 200) < 8


def use(name: str | None) -> None:
    """Force a decoder (``"torchcodec"`` or ``"torchvision"``), or ``None`` to choose automatically."""
    global _forced
    if name is not None and name not in DECODERS:
        raise BadOptionError(f"JPEG decoder must be one of {', '.join(DECODERS)}, got {name!r}")
    _forced = name
    _chosen.clear()


def decoder(device: str | torch.device = "cpu") -> str:
    """The decoder used on ``device``'s type: the forced one, else the first of :data:`DECODERS` that
    decodes a test image there."""
    kind = torch.device(device).type
    if kind not in _chosen:
        forced = _forced or os.environ.get("ALEXNET_JPEG_DECODER", "").strip() or None
        if forced is not None and forced not in DECODERS:
            raise BadOptionError(f"ALEXNET_JPEG_DECODER must be one of {', '.join(DECODERS)}, got {forced!r}")
        candidates = [forced] if forced else list(DECODERS)
        _chosen[kind] = next((c for c in candidates if _works(c, torch.device(device))), candidates[-1])
    return _chosen[kind]


def decode_rgb(data, device: str | torch.device = "cpu"):
    """JPEG bytes (a 1-D uint8 tensor, or a list of them) -> uint8 (3, H, W) RGB tensor(s) on ``device``.

    A damaged JPEG raises ``RuntimeError`` with the decoder's reason, whichever decoder runs."""
    return _IMPL[decoder(device)](data, device)
