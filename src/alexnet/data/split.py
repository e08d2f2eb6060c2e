"""Reproducible held-out splits (Imagenette and CIFAR-10 here have no validation set of their own)."""

from __future__ import annotations

import numpy as np

from alexnet.errors import BadOptionError


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``: a random ``val_fraction`` of ``range(n)`` held out, both sorted.

    Deterministic in ``(n, val_fraction, seed)``; the two parts are disjoint and cover ``range(n)``.
    The held-out count is ``round(n * val_fraction)`` (at least 1 when ``0 < val_fraction`` and n > 1).
    """
    if not 0 <= val_fraction < 1:
        raise BadOptionError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = int(n)
    k = int(round(n * val_fraction))
    if val_fraction > 0 and n > 1:
        k = min(max(k, 1), n - 1)
    perm = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0x5917]))).permutation(n)
    return np.sort(perm[k:]).astype(np.int64), np.sort(perm[:k]).astype(np.int64)
