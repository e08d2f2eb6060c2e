"""Opening a prepared dataset (``alexnet prepare``'s output) for evaluation and inspection."""

from __future__ import annotations

import os
from pathlib import Path

from alexnet.errors import UserError


def open_prepared(path: str | os.PathLike):
    """``alexnet.data.PreparedDataset(path)``, with a one-line error for a missing or foreign folder."""
    from alexnet.data import PreparedDataset

    path = Path(path)
    if not path.exists():
        raise UserError(f"prepared dataset not found: {path} (make one with 'alexnet prepare')")
    return PreparedDataset(path)
