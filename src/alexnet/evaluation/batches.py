"""Batches of stored uint8 squares from a prepared dataset, decoded ahead on a few threads.

Evaluation, features and neighbours take the dataset's 256x256 uint8 squares and crop and normalise them
with the *weights'* preprocessing (mean image or channel mean, std), which is not necessarily the
dataset's own mean that the training loader subtracts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from alexnet import runtime


def shard(n: int, rank: int, world_size: int) -> range:
    """Contiguous shard ``rank`` of ``range(n)``; the shards cover every index exactly once (sizes differ
    by at most one), so no image is dropped or counted twice under torchrun."""
    return range(n * rank // world_size, n * (rank + 1) // world_size)


def default_workers() -> int:
    """Decoding threads: this process's share of the CPUs (:func:`alexnet.runtime.cpu_share`), at most 8."""
    return min(8, runtime.cpu_share())


def iter_squares(dataset, indices: Sequence[int], batch_size: int, *, workers: int | None = None,
                 ahead: int | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(indices, squares)`` per batch: int64 (B,) and uint8 (B, S, S, 3), in the order of ``indices``.

    ``workers`` threads each decode whole batches (0: in this thread); up to ``ahead`` (default:
    ``workers``) batches are in flight."""
    workers = default_workers() if workers is None else workers
    ahead = max(1, workers if ahead is None else ahead)
    indices = np.asarray(indices, dtype=np.int64)
    chunks = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]

    def load(chunk: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(dataset.get_uint8(int(i)), dtype=np.uint8) for i in chunk]))

    if workers <= 0:
        for chunk in chunks:
            yield chunk, load(chunk)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(load, chunk)))
            if len(pending) > ahead:
                c, fut = pending.popleft()
                yield c, fut.result()
        while pending:
            c, fut = pending.popleft()
            yield c, fut.result()
