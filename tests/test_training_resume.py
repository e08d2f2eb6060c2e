"""Exact resume and faults, with real processes: SIGKILL mid-epoch + --resume gives bitwise equal weights;
SIGTERM saves a checkpoint and exits cleanly; a checkpoint write killed half-way leaves the old one."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from alexnet.training import checkpoint as ckpt
from alexnet.weights import read_weights

# cifar_4layer on 96 generated 40px images (72 train, 24 held out), batch 8: 9 steps per epoch.
ARGS = ["--arch", "cifar_4layer", "--demo-images", "96", "--demo-size", "40", "--demo-classes", "4",
        "--crop-size", "32", "--batch-size", "8", "--epochs", "2", "--val-split", "0.25", "--lr", "0.003",
        "--checkpoint-interval", "1", "--log-interval", "1", "--no-ten-crop"]


def _env():
    # One thread: the same arithmetic in every run, and no OpenMP waits on a shared CI machine.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train(*args, cwd):
    return subprocess.run([sys.executable, "-m", "alexnet", "train", *args], capture_output=True, text=True,
                          timeout=300, env=_env(), cwd=cwd)


def _start(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "alexnet", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=cwd)


def _wait_for(proc, needle: str, timeout: float = 240) -> list[str]:
    """Read the process's stdout until a line contains ``needle``."""
    lines, t0 = [], time.time()
    for line in proc.stdout:
        lines.append(line)
        if needle in line:
            return lines
        if time.time() - t0 > timeout:
            break
    proc.kill()
    raise AssertionError(f"never printed {needle!r}:\n{''.join(lines)}\n{proc.stderr.read()}")


def _weights(run_dir):
    return read_weights(run_dir / "weights.safetensors").state_dict


def test_sigkill_mid_epoch_then_resume_gives_bitwise_equal_weights(tmp_path):
    a = _train(*ARGS, "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert a.returncode == 0, a.stderr

    proc = _start(*ARGS, "--out", str(tmp_path / "b"), cwd=tmp_path)
    # Checkpoints are written in the background, one at a time: once step 3 is printed, step 2's save
    # has waited for step 1's write, so last.pt is mid-epoch 2.
    _wait_for(proc, "epoch 2/2  step 3/9")
    proc.send_signal(signal.SIGKILL)  # no chance to save anything: only the checkpoints already written
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "b" / "weights.safetensors").exists()
    state = ckpt.load_checkpoint(tmp_path / "b" / "last.pt")
    assert state["position"]["epoch"] == 1 and 0 < state["position"]["batch"] < 9  # mid-epoch 2

    b = _train("--resume", str(tmp_path / "b"), cwd=tmp_path)
    assert b.returncode == 0, b.stderr
    assert "resuming at epoch 2, batch" in b.stdout
    assert "epoch 1/2" not in b.stdout and "epoch 2/2  step 1/9" not in b.stdout  # it did not start over

    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k  # bitwise
    # the resumed epoch's metrics are those of the uninterrupted one (its partial sums were saved)
    rows_a = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    rows_b = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:7] for r in rows_a] == [r.split(",")[:7] for r in rows_b]


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = _start(*ARGS, "--checkpoint-interval", "0", "--out", str(tmp_path / "c"), cwd=tmp_path)
    _wait_for(proc, "epoch 1/2  step 3/9")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert "checkpoint saved" in out and "--resume" in out
    state = ckpt.load_checkpoint(tmp_path / "c" / "last.pt")  # no epoch had ended: written by the signal
    assert state["position"]["epoch"] == 0 and 3 <= state["position"]["batch"] < 9


def test_a_write_killed_half_way_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint({"x": torch.arange(4)}, path)

    real_save = torch.save

    def dies_half_way(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # what a signal during the write looks like

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint({"x": torch.zeros(4)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(ckpt.load_checkpoint(path)["x"], torch.arange(4))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_a_torn_file_is_a_clear_error_not_a_crash(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(Exception, match="not a readable checkpoint"):
        ckpt.load_checkpoint(bad)


class _RunsCode:
    """Unpickling this would run ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holding_code_is_refused_as_unsafe_and_never_run(tmp_path, capsys):
    from alexnet.cli.main import main

    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"format": "alexnet-checkpoint", "evil": _RunsCode(marker)}, run / "last.pt")
    assert main(["train", "--resume", str(run)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to load" in err[0] and "could run code" in err[0], err
    assert "weights_only=False" not in err[0] and "trust" not in err[0]
    assert not marker.exists()


def _run(*args, cwd, env, wait_for=None, sig=signal.SIGINT):
    """``alexnet train ARGS`` with ``env``; with ``wait_for``: signalled once a stdout line holds it."""
    proc = subprocess.Popen([sys.executable, "-m", "alexnet", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    lines = _wait_for(proc, wait_for) if wait_for else []
    if wait_for:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + out, err


def test_a_resume_continues_with_the_threads_the_run_trained_with(tmp_path):
    """A walkthrough: a run trained with --threads 1 and resumed without it went on with 2 threads and
    ended with other weights (sums split over threads round differently), although resume is exact."""
    from alexnet.runtime import cpu_share

    if cpu_share() < 2:
        pytest.skip("needs 2 CPUs: with one, every run has 1 thread")
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, "PYTHONUNBUFFERED": "1"}
    one = [*ARGS, "--threads", "1"]
    rc, out, err = _run(*one, "--out", str(tmp_path / "a"), cwd=tmp_path, env=env)
    assert rc == 0, err
    rc, out, err = _run(*one, "--out", str(tmp_path / "b"), cwd=tmp_path, env=env, wait_for="epoch 2/2  step 3/9")
    assert rc == 128 + signal.SIGINT and "checkpoint saved" in out, err
    rc, out, err = _run("--resume", str(tmp_path / "b"), cwd=tmp_path, env=env)
    assert rc == 0, err
    assert "continuing with 1 thread, as the run trained" in out
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # bitwise, as if never stopped
    # threads given on resume: they win, with a note that the run will not be repeated exactly
    rc, out, err = _run(*one, "--out", str(tmp_path / "c"), cwd=tmp_path, env=env, wait_for="epoch 2/2  step 3/9")
    assert rc == 128 + signal.SIGINT, err
    rc, out, err = _run("--resume", str(tmp_path / "c"), "--threads", "2", cwd=tmp_path, env=env)
    assert rc == 0 and "trained with 1 thread and continues with 2" in out and "--threads 1 for that" in out, err


def test_quiet_still_says_where_the_checkpoint_is_when_stopped(tmp_path):
    proc = _start(*ARGS, "--quiet", "--out", str(tmp_path / "q"), cwd=tmp_path)
    deadline = time.time() + 240
    while not (tmp_path / "q" / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert out == "" and "Traceback" not in err  # --quiet: no progress
    assert "checkpoint saved; continue with: alexnet train --resume" in err  # was: nothing at all
