"""Where the test-time crops of a square image lie: one rule for every path that crops.

The loader (CPU and CUDA), single-image preprocessing (``predict``, ``neighbors``, ``Preprocess``) and
evaluation all take their offsets from here, so the same square gives the same crops everywhere.
"""

from __future__ import annotations


def center_offset(size: int, crop: int) -> int:
    """Offset of the centre crop, rounded as torchvision's ``CenterCrop`` (256 -> 224: 16; -> 227: 14;
    -> 225: 16, Python's round-half-to-even)."""
    return int(round((size - crop) / 2.0))


def ten_crop_offsets(size: int, crop: int) -> list[tuple[int, int]]:
    """(y, x) of the paper's five test patches (section 4.1): the four corners and the centre.

    Order: top-left, top-right, bottom-left, bottom-right, centre (torchvision's ``FiveCrop`` order).
    Ten-crop outputs hold these five and then the mirror image of each, in the same order.
    """
    e, c = size - crop, center_offset(size, crop)
    return [(0, 0), (0, e), (e, 0), (e, e), (c, c)]
