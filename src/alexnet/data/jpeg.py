"""JPEG decoding for the loader: ``torchvision.io.decode_jpeg`` (libjpeg-turbo on CPU, nvJPEG on CUDA).

torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec and warns on every call;
they are still the fastest decoder installed with torch (batched, GIL-free, on the GPU too), so the
warning is silenced here, for that message only.
"""

from __future__ import annotations

import warnings

import torch

warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

from torchvision.io import ImageReadMode  # noqa: E402
from torchvision.io import decode_jpeg as _decode_jpeg  # noqa: E402


def decode_rgb(data, device: str | torch.device = "cpu"):
    """JPEG bytes (a 1-D uint8 tensor, or a list of them) -> uint8 (3, H, W) RGB tensor(s) on ``device``."""
    return _decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
