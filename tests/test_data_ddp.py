"""Loader sharding under real DDP: two gloo processes, rank and world size read from torch.distributed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

N = 37  # odd on purpose: train drops one image per epoch, eval gives the ranks 19 and 18


def _worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    from alexnet.data import ArrayDataset, Loader

    images = np.zeros((N, 8, 8, 3), np.uint8)
    images[..., 0] = np.arange(N)[:, None, None]
    ds = ArrayDataset(images, np.arange(N), classes=[str(i) for i in range(N)])
    result = {}
    train = Loader(ds, 4, train=True, crop_size=6, seed=7, workers=1)  # rank/world from torch.distributed
    assert (train.rank, train.world_size) == (rank, world)
    for epoch in (0, 1):
        train.set_epoch(epoch)
        ys, first_pixel = [], []
        for x, y in train:
            ys += y.tolist()
            first_pixel.append(float(x[0].sum()))
        result[f"train{epoch}"] = ys
        result[f"len{epoch}"] = len(train)
        result[f"aug{epoch}"] = first_pixel
    # the batched path (the CUDA default: workers gather, this thread augments) shards the same way
    batched = Loader(ds, 4, train=True, crop_size=6, seed=7, workers=1, augment="batched")
    batched.set_epoch(1)
    train.set_epoch(1)
    result["batched_same"] = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                 for a, b in zip(train, batched, strict=True))
    evaluation = Loader(ds, 5, train=False, crop_size=6, workers=1)
    result["eval"] = [y for _, ys in evaluation for y in ys.tolist()]
    gathered = [None] * world
    dist.all_gather_object(gathered, result)
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump(gathered, f)
    dist.barrier()
    dist.destroy_process_group()


def test_two_gloo_ranks_share_each_epoch(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    out = tmp_path / "result.json"
    # fork (where there is one) saves each rank re-importing torch; the ranks use one intra-op thread
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True,
                       start_method=method)
    r0, r1 = json.loads(out.read_text())
    assert r0["batched_same"] and r1["batched_same"]
    for epoch in (0, 1):
        a, b = r0[f"train{epoch}"], r1[f"train{epoch}"]
        # 37 // 2 = 18 each; batches of 4 with drop_last: 4 batches = 16 images per rank
        assert r0[f"len{epoch}"] == r1[f"len{epoch}"] == 4 and len(a) == len(b) == 16
        assert not set(a) & set(b)  # disjoint: each image used once per epoch over all ranks
    assert r0["train0"] != r0["train1"]  # reshuffled each epoch
    assert r0["aug0"] != r1["aug0"]
    # evaluation: every image exactly once over the two ranks (19 + 18)
    assert sorted(r0["eval"] + r1["eval"]) == list(range(N))
    assert (len(r0["eval"]), len(r1["eval"])) == (19, 18)
