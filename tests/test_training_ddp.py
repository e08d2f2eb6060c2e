"""DistributedDataParallel under torchrun: 2 CPU processes (gloo) train as one process with the same
global batch: same weights after K steps (float tolerance), metrics reduced over ranks, one writer."""

import csv
import os
import subprocess
import sys

import pytest
import torch

from alexnet.weights import read_weights

# cifar_4layer (no dropout: the same arithmetic in both set-ups) on 64 generated 32px images:
# 48 train + 16 held out; global batch 16 -> 3 steps per epoch, 2 epochs = 6 steps.
ARGS = ["--arch", "cifar_4layer", "--demo-images", "64", "--demo-size", "36", "--demo-classes", "4",
        "--crop-size", "32", "--batch-size", "16", "--epochs", "2", "--val-split", "0.25", "--lr", "0.003",
        "--log-interval", "1"]


def _run(cmd, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    one = _run([sys.executable, "-m", "alexnet", "train", *ARGS, "--out", str(tmp_path / "one")], tmp_path)
    assert one.returncode == 0, one.stderr
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "alexnet", "train", *ARGS, "--out", str(tmp_path / "two")], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes" in two.stdout
    assert two.stdout.count("run directory:") == 1  # only rank 0 reports

    w1 = read_weights(tmp_path / "one" / "weights.safetensors").state_dict
    w2 = read_weights(tmp_path / "two" / "weights.safetensors").state_dict
    torch.manual_seed(0)
    from alexnet.models import create_model

    init = create_model("cifar_4layer", num_classes=4).state_dict()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(w1[k], init[k], atol=1e-4) for k in w1)  # the weights did move

    # metrics are summed over ranks before dividing: the same numbers as one process
    m1, m2 = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert len(m1) == len(m2) == 2
    for r1, r2 in zip(m1, m2, strict=True):
        for key in ("train_loss", "train_top1_err", "train_top5_err", "val_top1_err", "val_top5_err"):
            assert abs(float(r1[key]) - float(r2[key])) < 1e-4, (key, r1[key], r2[key])
    # one writer: no stray temporary files from a second rank
    assert not [p for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]


def test_more_processes_than_gpus_is_one_line(monkeypatch):
    """torchrun --nproc_per_node 2 on a one-GPU machine: one line, not CUDA's 'invalid device ordinal'."""
    from alexnet.errors import UserError
    from alexnet.training.distributed import init_distributed

    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1"), ("LOCAL_WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"LOCAL_RANK=1 but this machine has 1 GPU\(s\)"):
        init_distributed("cuda")
