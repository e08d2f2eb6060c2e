"""Files written in the background: training goes on during a write, one write at a time, none lost, the
same files as writes in line, and a failed write is an error on the training thread."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from alexnet.training import TrainConfig, load_checkpoint, rundir, train
from alexnet.training import checkpoint as ckpt
from alexnet.training.trainer import Trainer
from alexnet.training.writer import BackgroundWriter, WriteError, host_copy

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny: tests/conftest.py


def _config(out, **kw):
    # 48 training images in batches of 16: 3 steps per epoch
    base = dict(arch="cifar_4layer", crop_size=32, epochs=2, batch_size=16, val_split=0.25, lr=0.01,
                warmup_epochs=0, ten_crop=False, out=str(out), log_interval=1)
    return TrainConfig(**{**base, **kw})


# ------------------------------------------------------------------------------------------ the pieces
def test_host_copy_is_a_copy_with_the_same_strides():
    w = torch.randn(4, 3, 5, 5).to(memory_format=torch.channels_last)
    state = {"model": {"w": w}, "optimizer": {"state": {0: {"momentum_buffer": w * 2}}, "param_groups": [{"lr": 1}]},
             "history": [{"epoch": 1}], "rng": (torch.get_rng_state(),), "step": 3}
    copy = host_copy(state)
    before = w.clone()
    w.add_(1)
    state["history"].append({"epoch": 2})
    state["history"][0]["epoch"] = 9
    assert torch.equal(copy["model"]["w"], before) and copy["model"]["w"].stride() == w.stride()
    assert copy["history"] == [{"epoch": 1}] and copy["step"] == 3 and isinstance(copy["rng"], tuple)
    assert copy["optimizer"]["param_groups"] == [{"lr": 1}]


def test_the_writer_runs_one_job_at_a_time_in_order():
    writes, done, running, most = BackgroundWriter(), [], [0], [0]

    def job(i):
        def write():
            running[0] += 1
            most[0] = max(most[0], running[0])
            time.sleep(0.02)
            done.append(i)
            running[0] -= 1
        return write

    for i in range(4):
        writes.submit((f"file {i}", job(i)))
        assert done == list(range(i))  # submit waited for the previous job, and only for that one
    writes.close()
    assert done == [0, 1, 2, 3] and most[0] == 1 and not writes.busy


def test_a_failed_job_is_raised_at_the_next_wait_in_one_line_or_reported():
    def full_disk():
        raise OSError(28, "No space left on device", "/runs/x/.last.pt.tmp1")

    writes = BackgroundWriter()
    writes.submit(("last.pt", full_disk), ("metrics.csv", lambda: pytest.fail("ran after a failed step")))
    with pytest.raises(WriteError) as e:
        writes.wait()
    assert str(e.value) == "writing last.pt failed: [Errno 28] No space left on device: '/runs/x/.last.pt.tmp1'"
    writes.wait()  # said once
    said = []
    writes.submit(("curves.png", full_disk))
    writes.close(report=said.append)  # on the way out of another error: said, not raised
    assert said == ["error: writing curves.png failed: [Errno 28] No space left on device: "
                    "'/runs/x/.last.pt.tmp1'"]


def test_offered_jobs_never_wait_and_the_newest_replaces_a_waiting_one():
    writes, done, release = BackgroundWriter(), [], threading.Event()

    def job(name, block=False):
        def write():
            if block:
                assert release.wait(timeout=60)
            done.append(name)
        return [(name, write)]

    writes.offer(job("a", block=True))  # idle: starts at once
    t = time.perf_counter()
    writes.offer(job("b"))  # in flight: b waits its turn
    writes.offer(job("c"), merge=lambda waiting, newer: newer + job(f"kept from {waiting[0][0]}"))
    assert time.perf_counter() - t < 1 and done == [] and writes.busy  # neither offer waited for "a"
    release.set()
    writes.wait()
    assert done == ["a", "c", "kept from b"] and writes.replaced == 1 and not writes.busy
    writes.offer(job("d"))  # idle again: runs now
    writes.close()
    assert done[-1] == "d"


def test_an_epochs_replaced_files_keep_their_best_checkpoint(tmp_path):
    """Epoch 2 improved, but its files were replaced by epoch 3's before they were written: best.pt is
    still epoch 2's checkpoint (written in full), last.pt epoch 3's, and the metrics are epoch 3's."""
    from alexnet.training.trainer import _EpochFiles

    def state(epoch):
        return {"position": {"epoch": epoch, "batch": 0, "step": 3 * epoch}, "model": {"w": torch.full((2,), epoch)}}

    hist = [{"epoch": 1, "val_top1_err": 0.5}, {"epoch": 2, "val_top1_err": 0.4}, {"epoch": 3, "val_top1_err": 0.45}]
    s2, s3 = state(2), state(3)
    job = _EpochFiles.merge(_EpochFiles(tmp_path, s2, s2, hist[:2], "t"), _EpochFiles(tmp_path, s3, None, hist, "t"))
    for _, write in job.steps():
        write()
    assert load_checkpoint(tmp_path / rundir.LAST)["position"]["epoch"] == 3
    assert load_checkpoint(tmp_path / rundir.BEST)["position"]["epoch"] == 2
    with open(tmp_path / "metrics.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]
    # an improved newer epoch wins; one whose best is its own is linked, not written twice
    s4 = state(4)
    job = _EpochFiles.merge(_EpochFiles(tmp_path, s3, s2, hist, "t"), _EpochFiles(tmp_path, s4, s4, hist, "t"))
    assert job.best is s4 and [name for name, _ in job.steps()][:2] == [rundir.LAST, rundir.BEST]


@pytest.mark.parametrize("epochs", [1, 2, 5])
def test_curves_tick_whole_epochs_also_for_one_or_two(epochs):
    """curves.png's epoch axes read 1, 2, ... (one epoch: "1" alone), never 0.96 or 1.2."""
    history = [dict(epoch=e, train_loss=2.3 - 0.2 * e, train_top1_err=0.9 - 0.1 * e, train_top5_err=0.5 - 0.05 * e,
                    val_top1_err=0.92 - 0.1 * e, val_top5_err=None) for e in range(1, epochs + 1)]
    fig = rundir.curves_figure(history, title="demo")
    fig.draw_without_rendering()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        shown = [t.get_text() for t in ax.get_xticklabels() if low <= t.get_position()[0] <= high]
        assert shown == [str(e) for e in range(1, epochs + 1)], shown


def test_curves_mark_the_schedules_cuts_of_the_lr_not_a_cosine_fall():
    """The plateau schedule's cuts (lr / 10 after epochs 3 and 5) are marked between the epochs' points,
    with the factor; a warm-up's rise and a cosine's fall, however steep at its end, are not."""
    import math

    plateau = [0.01] * 3 + [0.001] * 2 + [0.0001] * 2
    cosine = [0.005 * (1 + math.cos(math.pi * e / 8)) for e in range(1, 9)]
    warmup = [0.002, 0.004, 0.006, 0.008, 0.01, 0.01]
    assert rundir.lr_drops([dict(epoch=e, lr=lr) for e, lr in enumerate(plateau, 1)]) == [
        (3.5, pytest.approx(0.1)), (5.5, pytest.approx(0.1))]
    for lrs in (cosine, warmup):
        assert rundir.lr_drops([dict(epoch=e, lr=lr) for e, lr in enumerate(lrs, 1)]) == []
    history = [dict(epoch=e, train_loss=1.0, train_top1_err=0.5, train_top5_err=0.2, val_top1_err=0.5,
                    val_top5_err=0.2, lr=lr) for e, lr in enumerate(plateau, 1)]
    fig = rundir.curves_figure(history)
    marks = [t.get_text() for t in fig.axes[1].texts]
    assert marks == [" lr x0.1", " lr x0.1"]


def test_epochs_shorter_than_a_write_do_not_wait_for_the_disk(tmp_path, tiny, monkeypatch):
    """Epoch 1's checkpoint write lasts until epoch 3 has ended: the epochs went on meanwhile, a newer
    epoch's files replaced epoch 2's, and at the end last.pt is the last epoch's, best.pt the best epoch's."""
    real_save, real_save_epoch = ckpt.save_checkpoint, Trainer._save_epoch
    third_done, written, waited = threading.Event(), [], []

    def slow_save(state, path):
        if state["position"]["epoch"] == 1 and path.name == rundir.LAST:
            waited.append(third_done.wait(timeout=120))
        written.append((state["position"]["epoch"], path.name))
        return real_save(state, path)

    def save_epoch(self, improved):
        real_save_epoch(self, improved)
        if self.epoch == 3:
            third_done.set()

    monkeypatch.setattr(ckpt, "save_checkpoint", slow_save)
    monkeypatch.setattr(Trainer, "_save_epoch", save_epoch)
    r = train(_config(tmp_path / "run", epochs=6, lr=0.05), dataset=tiny, progress=False)
    assert waited == [True]  # epochs 2 and 3 ended while epoch 1's checkpoint was being written
    lasts = [e for e, name in written if name == rundir.LAST]
    assert lasts[0] == 1 and lasts[-1] == 6 and 2 not in lasts  # epoch 2's files (at least) were replaced
    assert load_checkpoint(r.run_dir / "last.pt")["position"]["epoch"] == 6
    errs = [row["val_top1_err"] for row in r.history]
    assert load_checkpoint(r.run_dir / "best.pt")["position"]["epoch"] == errs.index(min(errs)) + 1
    with open(r.run_dir / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 6


# ------------------------------------------------------------------------------------------ in a run
def test_training_goes_on_while_a_checkpoint_is_written(tmp_path, tiny, monkeypatch):
    real_save, real_step = ckpt.save_checkpoint, Trainer.train_step
    writing, stepped = threading.Event(), threading.Event()
    saved, went_on, running, most = [], [], [0], [0]

    def slow_save(state, path):
        running[0] += 1
        most[0] = max(most[0], running[0])
        if state["position"]["step"] == 1:  # the first write lasts until the training thread takes a step
            writing.set()
            went_on.append(stepped.wait(timeout=60))
            writing.clear()
        saved.append(state["position"]["step"])
        try:
            return real_save(state, path)
        finally:
            running[0] -= 1

    def step(self, x, y):
        real_step(self, x, y)
        if writing.is_set():
            stepped.set()

    monkeypatch.setattr(ckpt, "save_checkpoint", slow_save)
    monkeypatch.setattr(Trainer, "train_step", step)
    r = train(_config(tmp_path / "run", checkpoint_interval=1), dataset=tiny, progress=False)
    assert went_on == [True]  # a step ran while the write was under way
    assert saved == [1, 2, 3, 4, 5, 6] and most[0] == 1  # every checkpoint, one at a time, in order
    assert load_checkpoint(r.run_dir / "last.pt")["position"] == {"epoch": 2, "batch": 0, "step": 6}


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_failed_checkpoint_write_stops_the_run_with_one_line(tmp_path, tiny, monkeypatch, epochs):
    def full_disk(state, path):
        raise OSError(28, "No space left on device", str(path))

    real_step, steps = Trainer.train_step, []

    def step(self, x, y):
        real_step(self, x, y)
        steps.append(self.step)

    monkeypatch.setattr(ckpt, "save_checkpoint", full_disk)
    monkeypatch.setattr(Trainer, "train_step", step)
    with pytest.raises(WriteError) as e:
        train(_config(tmp_path / "run", epochs=epochs), dataset=tiny, progress=False)
    assert str(e.value).startswith("writing last.pt failed: [Errno 28] No space left on device")
    assert "\n" not in str(e.value)
    # raised at the next wait (the next epoch's checkpoint, or the end of the run): training went on
    assert steps == list(range(1, 3 * epochs + 1))
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_failed_curves_write_is_named(tmp_path, tiny, monkeypatch):
    def broken(path, history, title="", **kw):
        raise ValueError("cannot draw")

    monkeypatch.setattr(rundir, "write_curves", broken)
    with pytest.raises(WriteError, match=r"^writing curves.png failed: cannot draw$"):
        train(_config(tmp_path / "run", epochs=1), dataset=tiny, progress=False)
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "metrics.csv").is_file()


@pytest.mark.parametrize("stop", ["end", "max_steps", "callback", "signal"])
def test_curves_are_drawn_at_most_every_so_often_and_at_the_end(tmp_path, tiny, monkeypatch, stop):
    """With epochs shorter than CURVES_EVERY_S, curves.png is drawn at the first epoch and at the run's end
    (its last epoch, or the last epoch finished when max_steps, a callback or SIGINT stops it early,
    the signal mid-epoch), never in between; the
    other files every epoch (unless a newer epoch's replace them). A waiting job that was to draw hands the
    drawing to the job replacing it."""
    from alexnet.training import trainer as trainer_module
    from alexnet.training.trainer import _EpochFiles

    drawn, csv_rows = [], []
    real_curves, real_csv = rundir.write_curves, rundir.write_metrics_csv
    monkeypatch.setattr(trainer_module, "CURVES_EVERY_S", 3600.0)
    monkeypatch.setattr(rundir, "write_curves", lambda path, history, title="", **kw: (
        drawn.append(len(history)), real_curves(path, history, title=title, **kw)))
    monkeypatch.setattr(rundir, "write_metrics_csv", lambda path, history: (
        csv_rows.append(len(history)), real_csv(path, history)))
    steps_per_epoch = 3  # 48 training images of tiny, batch 16 (_config)
    kw = {"max_steps": 3 * steps_per_epoch} if stop == "max_steps" else {}

    def callback(row):
        if row["epoch"] == 3 and stop == "signal":
            os.kill(os.getpid(), signal.SIGINT)  # seen at the next step: the run stops in epoch 4
        return row["epoch"] == 3 and stop == "callback"

    r = train(_config(tmp_path / "run", epochs=5, **kw), dataset=tiny, progress=False, callback=callback)
    finished = 5 if stop == "end" else 3
    assert len(r.history) == finished and (r.interrupted == "SIGINT") == (stop == "signal"), r.history
    assert bool(r.final) == (stop != "signal")
    # (metrics.csv: a newer epoch's replaces one still waiting behind a checkpoint's write)
    assert drawn == [1, finished] and csv_rows[0] == 1 and csv_rows[-1] == finished, (drawn, csv_rows)
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    # merge: the drawing of a replaced job is not lost
    a = _EpochFiles(tmp_path, {}, None, [{}], "t", draw=True)
    b = _EpochFiles(tmp_path, {}, None, [{}, {}], "t", draw=False)
    assert _EpochFiles.merge(a, b).draw and "curves.png" in [n for n, _ in b.steps()]
    assert "curves.png" not in [n for n, _ in _EpochFiles(tmp_path, {}, None, [{}], "t", draw=False).steps()]


def _same(a, b, where=""):
    """Equal nested state; the times a run measures may differ."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b) and a.dtype == b.dtype and a.stride() == b.stride(), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            if k not in ("epoch_seconds", "epoch_train_seconds", "seconds", "images_per_s"):
                _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def test_the_files_are_those_that_writes_in_line_give(tmp_path, tiny, monkeypatch):
    out = tmp_path / "run"
    cfg = _config(out, epochs=3, checkpoint_interval=2)
    train(cfg, dataset=tiny, progress=False)
    background = out.rename(tmp_path / "background")

    def in_line(self, *steps):
        for _, write in steps:
            write()

    monkeypatch.setattr(BackgroundWriter, "submit", in_line)
    train(cfg, dataset=tiny, progress=False)
    for name in ("last.pt", "best.pt"):
        _same(load_checkpoint(background / name), load_checkpoint(out / name), name)
    timing = {"images_per_s", "seconds"}
    rows = [[{k: v for k, v in row.items() if k not in timing} for row in csv.DictReader(open(d / "metrics.csv"))]
            for d in (background, out)]
    assert rows[0] == rows[1] and len(rows[0]) == 3
    assert (background / "curves.png").stat().st_size > 0


def test_the_writes_benchmark_runs(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "writes.py"
    p = subprocess.run([sys.executable, str(script), "--device", "cpu", "--arch", "cifar_4layer", "--draws", "1",
                        "--epochs", "3", "--epoch-seconds", "0.01", "--contention", "--dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out["files"]["curves_png_s"]) == 1 and len(out["checkpoint"]["host_copy_s"]) == 3
    short = out["short_epochs"]
    assert short["submit"]["checkpoints_written"] == 3 and 1 <= short["offer"]["checkpoints_written"] <= 3
    c = out["contention"]
    assert c["ops_per_s_alone"] > 0
    for job in ("curves.png", "checkpoint"):
        assert len(c[job]["loop_pace_share"]) == 1 and c[job]["loop_pace_share"][0] > 0 and c[job]["seconds_alone"] > 0
    assert list(tmp_path.iterdir()) == []  # its temporary folder is gone


def _drawn_curves(history, **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = rundir.curves_figure(history, **kw)
    FigureCanvasAgg(fig).draw()
    return fig, fig.canvas.get_renderer()


def _paper_like(epochs=90, cuts=(30, 60, 80)):
    """A 90-epoch run whose learning rate is cut by 10 after epochs 30, 60 and 80."""
    import math

    rows = []
    for e in range(1, epochs + 1):
        n = sum(e > k for k in cuts)
        err = 0.3 + 0.6 * math.exp(-e / 8) - 0.08 * n
        rows.append(dict(epoch=e, train_loss=1.1 + 2.5 * math.exp(-e / 8) - 0.15 * n, train_top1_err=err,
                         train_top5_err=0.35 * err, val_top1_err=err + 0.05, val_top5_err=0.35 * err + 0.03,
                         lr=0.01 * 0.1 ** n))
    return rows


def test_curves_legend_and_curves_leave_the_lr_labels_free_and_long_runs_have_no_beads():
    """90 epochs with cuts after 30, 60, 80: the legend (loc="best") covered the "lr x0.1" labels at the top
    and a marker on each of the 90 epochs made bead chains."""
    fig, renderer = _drawn_curves(_paper_like(), title="paper-like")
    loss, errors = fig.axes
    labels = errors.texts
    assert [t.get_text() for t in labels] == [" lr x0.1"] * 3
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert not loss.legend_ and not errors.legend_  # one legend, below the panels
    for ax in fig.axes:
        assert not box.overlaps(ax.bbox)
        assert not box.overlaps(ax.xaxis.get_tightbbox(renderer))
    for text in labels:
        extent = text.get_window_extent(renderer)
        assert not extent.overlaps(box)
        assert extent.y0 >= errors.bbox.y1  # above the axes, where no curve runs
        assert not extent.overlaps(fig._suptitle.get_window_extent(renderer))
    for a, b in zip(labels, labels[1:], strict=False):  # nor on each other
        assert not a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer))
    assert all(line.get_marker() in (None, "None", "") for ax in fig.axes for line in ax.lines)
    short, _ = _drawn_curves(_paper_like(epochs=12, cuts=(5, 9)))
    assert {line.get_marker() for line in short.axes[1].lines if line.get_linestyle() != ":"} == {"o", "s"}


def test_curves_error_axis_follows_the_data_and_keeps_markers_whole():
    """The demo run ends at 0.00% validation / 0.59% training error: on a fixed 0-100% axis it lay flat
    on the x axis, its markers at 0 cut in half by the spine."""
    demo = [dict(epoch=1, train_loss=1.84, train_top1_err=0.5156, train_top5_err=0.1699, val_top1_err=0.3047,
                 val_top5_err=0.0781, lr=0.0043),
            dict(epoch=2, train_loss=1.53, train_top1_err=0.3770, train_top5_err=0.1035, val_top1_err=0.2734,
                 val_top5_err=0.0781, lr=0.0026),
            dict(epoch=3, train_loss=0.30, train_top1_err=0.0977, train_top5_err=0.0195, val_top1_err=0.0078,
                 val_top5_err=0.0, lr=0.00078),
            dict(epoch=4, train_loss=0.02, train_top1_err=0.0059, train_top5_err=0.0, val_top1_err=0.0,
                 val_top5_err=0.0, lr=7.5e-07)]
    fig, _ = _drawn_curves(demo)
    errors = fig.axes[1]
    low, high = errors.get_ylim()
    assert low == 0 and 51.56 < high < 56  # the data's range and a margin, not 0-100
    curves = [line for line in errors.lines if line.get_linestyle() != ":"]
    assert len(curves) == 4 and not any(line.get_clip_on() for line in curves)  # a marker at 0% drawn whole
    assert all(line.get_zorder() > errors.spines["bottom"].get_zorder() for line in curves)
    # a run between 60% and 99%: never past 100, never down to 0
    high_errors = [dict(epoch=e, train_loss=2.0, train_top1_err=0.99 - 0.1 * e, train_top5_err=0.9 - 0.1 * e,
                        val_top1_err=0.97 - 0.1 * e, val_top5_err=None) for e in range(1, 4)]
    low, high = _drawn_curves(high_errors)[0].axes[1].get_ylim()
    assert 55 < low < 60 and 89 < high <= 100
    assert rundir.error_limits([0.0, 0.0]) == (0.0, 1.0) and rundir.error_limits([100.0]) == (99.0, 100.0)


def test_curves_take_numpy_values_and_leave_out_infinite_ones(tmp_path):
    """The review: inf in an error column made the axis limits infinite (ValueError), inf in lr an
    OverflowError; numpy scalars (an API caller's) were drawn as missing."""
    import numpy as np

    from alexnet.training.rundir import curves_figure

    history = [{"epoch": 1, "train_loss": np.float32(2.0), "train_top1_err": 0.8, "val_top1_err": float("inf"),
                "lr": float("inf")},
               {"epoch": 2, "train_loss": 1.5, "train_top1_err": np.float64(0.5), "val_top1_err": 0.6, "lr": 0.01}]
    fig = curves_figure(history)
    loss = [line for line in fig.axes[0].get_lines() if line.get_label() == "train loss"][0]
    assert list(loss.get_ydata()) == [2.0, 1.5]
    low, high = fig.axes[1].get_ylim()
    assert 0 <= low < 50 and 60 < high <= 100
