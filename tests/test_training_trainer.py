"""The trainer in-process on tiny generated data: run directory, metrics, weights, callback, faults."""

import csv
import json
import math
import re

import numpy as np
import pytest
import torch
import yaml

from alexnet.data import ArrayDataset
from alexnet.data.demo import make_demo_images
from alexnet.errors import UserError
from alexnet.training import NonFiniteLossError, TrainConfig, load_checkpoint, resume, train
from alexnet.training.datasets import WithStats
from alexnet.training.metrics import PHASES, WallClock
from alexnet.training.rundir import METRIC_COLUMNS
from alexnet.training.trainer import label_chance
from alexnet.weights import read_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny: tests/conftest.py


def _config(tmp_path, **kw):
    # warmup_epochs=0: these tests are about the trainer's mechanics, calibrated at a constant lr
    base = dict(arch="cifar_4layer", crop_size=32, epochs=2, batch_size=16, val_split=0.25, lr=0.01,
                warmup_epochs=0,
                out=str(tmp_path / "run"), log_interval=1)
    return TrainConfig(**{**base, **kw})


def test_run_directory_holds_everything(tmp_path, tiny):
    r = train(_config(tmp_path), dataset=tiny, progress=False)
    d = r.run_dir
    for name in ("config.yaml", "metrics.csv", "curves.png", "last.pt", "best.pt", "weights.safetensors",
                 "summary.json"):
        assert (d / name).is_file(), name
    with open(d / "metrics.csv") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == METRIC_COLUMNS and len(rows) == 3
    assert [int(r_[0]) for r_ in rows[1:]] == [1, 2]
    assert len(r.history) == 2
    for row in r.history:
        for key in ("train_top1_err", "train_top5_err", "val_top1_err", "val_top5_err"):
            assert 0.0 <= row[key] <= 1.0
        assert row["images_per_s"] > 0 and row["lr"] == pytest.approx(0.01)
    # the resolved config is saved, and reads back to the same config
    assert TrainConfig.from_dict(yaml.safe_load((d / "config.yaml").read_text())) == r.config
    # final weights: metadata (arch, classes, preprocessing, mean image) and the trained tensors
    w = read_weights(d / "weights.safetensors")
    assert w.arch == "cifar_4layer" and [c["name"] for c in w.classes] == tiny_names()
    assert w.preprocess["crop_size"] == 32 and w.preprocess["mean"] == "image"
    assert w.preprocess["std_rgb"] is None and len(w.preprocess["mean_rgb"]) == 3
    assert w.mean_image.shape == (36, 36, 3)
    for k, v in r.model.state_dict().items():
        assert torch.equal(w.state_dict[k], v.cpu())
    # the returned model predicts as the same weights loaded from the run: the run's classes and mean image
    import alexnet
    from alexnet.evaluation.predict import predict

    assert [c["name"] for c in r.model.meta.classes] == tiny_names()
    squares = [tiny.get_uint8(i) for i in range(3)]
    ours, loaded = predict(r.model.eval(), squares), predict(alexnet.load(d), squares)
    for a, b in zip(ours, loaded, strict=True):  # (the returned module may be in channels_last: float noise)
        assert [t["name"] for t in a.top] == [t["name"] for t in b.top]
        assert [t["probability"] for t in a.top] == pytest.approx([t["probability"] for t in b.top], abs=1e-6)
    # checkpoints load with weights_only=True and hold plain data
    state = load_checkpoint(d / "last.pt")
    assert state["position"] == {"epoch": 2, "batch": 0, "step": 6}
    assert isinstance(state["config"], dict) and len(state["history"]) == 2
    summary = json.loads((d / "summary.json").read_text())
    assert summary["ten_crop_top1_err"] is not None and 0 <= summary["ten_crop_top1_err"] <= 1
    assert r.final["val_top1_err"] == r.history[-1]["val_top1_err"]
    # where the time went: every phase of this run took some, and the phases add up to the total
    t = summary["time"]
    for phase in ("setup", "training", "validation", "final_evaluation", "weights"):
        assert t[f"{phase}_s"] > 0, (phase, t)
    assert t["compilation_s"] == 0 and t["other_s"] >= 0
    assert sum(v for k, v in t.items() if k != "total_s") == pytest.approx(t["total_s"], abs=0.01)
    assert summary["seconds"] == t["total_s"] == r.final["seconds"]


def test_slow_steps_still_show_progress_between_log_intervals(tmp_path, tiny, capsys, monkeypatch):
    """A walkthrough: the paper's net on a laptop CPU showed nothing for minutes (50 steps of seconds each
    before the first line). Now a line is due by the clock too: after 10 s, then every 30 s (a bar: 2 s)."""
    from alexnet.progress import TrainingProgress

    p = TrainingProgress(enabled=True, bar=False, epochs=1)
    p.start_epoch(0, 9)
    assert not p.due()
    p.t_interval -= 11
    assert p.due()  # the first line after 10 s
    p.update(1, 1, 2.3, 0.9, 0.01)
    p.t_interval -= 11
    assert not p.due() and p.lines == 1  # then every 30 s
    p.t_interval -= 20
    assert p.due() and not TrainingProgress(enabled=False).due()
    capsys.readouterr()
    monkeypatch.setattr(TrainingProgress, "due", lambda self: True)  # every step "slow"
    train(_config(tmp_path, epochs=1, log_interval=1000), dataset=tiny, progress=True)
    out = capsys.readouterr().out
    assert re.search(r"step 1/3  loss", out) and re.search(r"step 2/3  loss", out), out


@pytest.mark.parametrize("num_classes", [4, 6])
def test_printed_lines_show_the_history_in_percent(tmp_path, capsys, monkeypatch, num_classes):
    """The API and the files hold fractions; every line printed shows the same errors in percent. Top-5
    errors are shown from 6 classes up (of 5 or fewer, always 0: a walkthrough saw 'top-5 err 0.00%' lines
    and two flat curves at 0 on 4 classes)."""
    from alexnet.data import ArrayDataset
    from alexnet.data.demo import make_demo_images

    images, labels, classes = make_demo_images(16 * num_classes, 36, seed=3, num_classes=num_classes)
    data = ArrayDataset(images, labels, classes=classes)
    from alexnet.training import rundir

    drawn, real = [], rundir.write_curves
    monkeypatch.setattr(rundir, "write_curves", lambda *a, **kw: drawn.append(kw.get("top5", True)) or real(*a, **kw))
    r = train(_config(tmp_path, epochs=1, log_interval=2), dataset=data, progress=True)
    out = capsys.readouterr().out
    row, f = r.history[0], r.final
    top5 = num_classes > 5
    assert drawn and set(drawn) == {top5}
    assert 0 <= row["val_top1_err"] <= 1 and f["val_top1_err"] == row["val_top1_err"]
    shown = f"  top-5 err {100 * row['val_top5_err']:.2f}%" if top5 else "  lr"
    assert f"top-1 err {100 * row['train_top1_err']:.2f}%  val top-1 err {100 * row['val_top1_err']:.2f}%{shown}" \
        in out, out
    assert re.search(r"step 2/\d  loss \d+\.\d{4}  top-1 err \d+\.\d\d%", out), out
    for what, key in (("centre crop:", "val"), ("10 crops:  ", "ten_crop")):
        five = f", top-5 error {100 * f[key + '_top5_err']:.2f}%" if top5 else "\n"
        assert f"final validation, {what} top-1 error {100 * f[key + '_top1_err']:.2f}%{five}" in out, out
    assert ("top-5" in out) == top5
    assert f"training cifar_4layer on {16 * num_classes} images given in memory:" in out  # was the repr
    assert WallClock.describe(f["time"]) + "\n" in out, out


def test_wall_clock_lines_up_the_phases_largest_first():
    summary = {"total_s": 112.0, "setup_s": 3.0, "compilation_s": 40.0, "training_s": 11.0, "validation_s": 30.0,
               "checkpoints_s": 0.01, "final_evaluation_s": 5.0, "weights_s": 1.0, "other_s": 22.0}
    assert WallClock.describe(summary) == (
        "time: 112 s in all; compilation 40 s (36%), validation 30 s (27%), other 22 s (20%), training 11 s (10%), "
        "final evaluation 5.0 s (4%), setup 3.0 s (3%), weights 1.0 s (1%)")
    clock = WallClock()
    with clock.phase("validation"):
        pass
    clock.add("training", 2.5)
    t = clock.summary()
    # 2.5 s counted but not spent: "other" goes below zero rather than hide it
    assert t["training_s"] == 2.5 and 0 <= t["validation_s"] < 1 and -2.5 <= t["other_s"] < -1.5
    assert set(t) == {"total_s", "other_s", *(f"{k}_s" for k in PHASES)}


def tiny_names():
    return ["disc", "square", "triangle", "ring"]


def test_fresh_run_refuses_an_existing_run(tmp_path, tiny):
    train(_config(tmp_path, epochs=1, ten_crop=False), dataset=tiny, progress=False)
    with pytest.raises(Exception, match="already holds a run"):
        train(_config(tmp_path, epochs=1), dataset=tiny, progress=False)


def test_a_run_into_a_prepared_dataset_is_refused(tmp_path, tiny):
    """The walkthrough: train --out DATASET mixed last.pt and weights with meta.json and shards/."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "meta.json").write_text("{}")
    (tmp_path / "run" / "shards").mkdir()
    with pytest.raises(UserError, match="holds a prepared dataset: choose another --out"):
        train(_config(tmp_path, epochs=1, ten_crop=False), dataset=tiny, progress=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["meta.json", "shards"]


def test_one_class_is_refused_and_tiny_crops_of_large_images_are_noted(tmp_path, tiny, capsys):
    import numpy as np

    one = ArrayDataset(tiny.images, np.zeros(len(tiny), dtype=np.int64), classes=tiny.classes[:1])
    with pytest.raises(UserError, match="are all of one class: a classifier needs images of at least 2"):
        train(_config(tmp_path, epochs=1, ten_crop=False), dataset=one, progress=False)
    # cifar_4layer's 32-px crops of 100-px images: 10.2% of each (of 256-px ones in the walkthrough: 1.6%)
    images, labels, classes = make_demo_images(16, 100, seed=3, num_classes=2)
    large = ArrayDataset(images, labels, classes=classes)
    train(_config(tmp_path, epochs=1, ten_crop=False, batch_size=4, max_steps=1), dataset=large)
    out = capsys.readouterr().out
    assert "note: 32x32 crops of 100x100 images see 10.2% of each image" in out, out
    train(_config(tmp_path, out=str(tmp_path / "b"), epochs=1, ten_crop=False, max_steps=1), dataset=tiny)
    assert "crops of" not in capsys.readouterr().out


def test_callback_gets_train_error_and_can_stop(tmp_path, tiny):
    seen = []

    def cb(row):
        seen.append(row["train_top1_err"])
        return True  # stop after the first epoch

    r = train(_config(tmp_path, epochs=5, ten_crop=False), dataset=tiny, progress=False, callback=cb)
    assert len(seen) == 1 and len(r.history) == 1 and r.final["epochs"] == 1
    assert (r.run_dir / "weights.safetensors").is_file()


def test_training_lowers_the_loss(tmp_path, tiny):
    r = train(_config(tmp_path, epochs=6, lr=0.003, val_split=0.0, lighting=0.0, ten_crop=False),
              dataset=tiny, progress=False)
    losses = [row["train_loss"] for row in r.history]
    assert losses[-1] < losses[0] - 0.3, losses  # measured: 1.39 -> 0.20
    assert r.final["val_top1_err"] is None  # no validation data


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny):
    cfg = _config(tmp_path, lr=1e12, epochs=3, checkpoint_interval=1, val_split=0.0)
    with pytest.raises(NonFiniteLossError, match=r"not finite at step (\d+)") as e:
        train(cfg, dataset=tiny, progress=False)
    bad_step = int(str(e.value).split("at step ")[1].split()[0])
    last = tmp_path / "run" / "last.pt"
    assert "last good checkpoint" in str(e.value) and last.is_file()
    state = load_checkpoint(last)
    assert state["position"]["step"] < bad_step
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "run" / "weights.safetensors").exists()


def test_max_steps_stops_mid_epoch_and_still_evaluates(tmp_path, tiny):
    r = train(_config(tmp_path, epochs=3, max_steps=4, ten_crop=False), dataset=tiny, progress=False)
    assert r.final["steps"] == 4 and len(r.history) == 1
    assert r.final["val_top1_err"] is not None
    assert load_checkpoint(r.run_dir / "last.pt")["position"] == {"epoch": 1, "batch": 1, "step": 4}
    # Resuming a run that has used its step budget takes no further step, however often it is resumed.
    for _ in range(2):
        again = resume(r.run_dir, dataset=tiny, progress=False)
        assert again.final["steps"] == 4
        assert load_checkpoint(r.run_dir / "last.pt")["position"]["step"] == 4


def test_resuming_a_complete_run_does_nothing_and_says_how_to_train_longer(tmp_path, tiny, capsys):
    """A finished run resumed as it is: no step, no evaluation again, summary.json left as it was, and
    the way to extend it; with a larger --epochs it trains on; with its summary damaged its end (final
    evaluation, weights, summary) is done again."""
    r = train(_config(tmp_path, epochs=1), dataset=tiny, progress=False)
    summary = r.run_dir / "summary.json"
    before = summary.read_bytes()
    capsys.readouterr()
    again = resume(r.run_dir, dataset=tiny, progress=True)
    out = capsys.readouterr().out
    assert "is already complete (1 epoch, its results in summary.json); nothing to do" in out and f"alexnet train --resume {r.run_dir} --epochs 2" in out
    assert "final validation" not in out and summary.read_bytes() == before
    assert again.final["ten_crop_top1_err"] == r.final["ten_crop_top1_err"] and again.final["steps"] == 3
    assert again.history == r.history and again.model is not None

    summary.write_text("{not json")
    redone = resume(r.run_dir, dataset=tiny, progress=True)
    assert "final validation, 10 crops" in capsys.readouterr().out
    assert redone.final["ten_crop_top1_err"] == pytest.approx(r.final["ten_crop_top1_err"])
    assert json.loads(summary.read_text())["steps"] == 3

    longer = resume(r.run_dir, dataset=tiny, progress=False, epochs=2)
    assert longer.final["epochs"] == 2 and longer.final["steps"] == 6


def test_separate_validation_data_is_normalised_with_the_training_statistics(tiny):
    images, labels, classes = make_demo_images(8, 36, seed=9, num_classes=4)
    val = ArrayDataset(images, labels, classes=classes)
    seen = WithStats(val, tiny)
    assert np.array_equal(seen.mean_image, tiny.mean_image) and not np.array_equal(val.mean_image, tiny.mean_image)
    assert len(seen) == 8 and np.array_equal(seen.labels, val.labels) and seen.size == 36


def test_history_errors_are_finite_fractions(tmp_path, tiny):
    r = train(_config(tmp_path, epochs=1, ten_crop=False, optimizer="nesterov", schedule="step", step_size=2),
              dataset=tiny, progress=False)
    row = r.history[0]
    assert math.isfinite(row["train_loss"]) and row["lr"] == pytest.approx(0.01 * 0.1)


def test_tensorboard_events_when_installed(tmp_path, tiny):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = train(_config(tmp_path, epochs=2, ten_crop=False), dataset=tiny, progress=False)
    assert list((r.run_dir / "tb").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(r.run_dir / "tb"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2]  # one point per epoch, as in metrics.csv
    assert [e.value for e in loss] == pytest.approx([row["train_loss"] for row in r.history], rel=1e-6)
    assert "val/top1_err" in events.Tags()["scalars"]


def test_device_under_torchrun_is_the_local_rank_gpu(monkeypatch):
    # resolve_device on a (pretended) 2-GPU machine with 2 processes: plain "cuda" maps to cuda:LOCAL_RANK;
    # an explicit cuda:N would put every rank on one GPU, so it is a one-line error.
    from alexnet.errors import UserError
    from alexnet.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda", 0)
    with pytest.raises(UserError, match="--device cuda:0 under torchrun"):
        resolve_device("cuda:0", local_rank=1)
    with pytest.raises(UserError, match="this machine has 2 GPU"):
        resolve_device("cuda:2")
    with pytest.raises(UserError, match="not a device"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")


def _unlearnable(tiny):
    # 16 different images, each four times, once with every label: no network can beat a constant guess
    # (balanced labels: its loss is ln 4), however alive it is.
    return ArrayDataset(np.repeat(tiny.images[:16], 4, axis=0), np.tile(np.arange(4), 16), classes=tiny.classes)


def test_a_run_at_chance_level_says_so_once_and_marks_its_epochs(tmp_path, tiny, capsys):
    r = train(_config(tmp_path, epochs=4, val_split=0.0, lighting=0.0, ten_crop=False, lr=0.003),
              dataset=_unlearnable(tiny), progress=True)
    out = capsys.readouterr().out
    # Its units are alive (they just cannot tell equal images apart): a plateau, said once, not "dead".
    assert out.count("note: the network has not learned anything yet") == 1, out
    assert "dead" not in out
    flags = [row["stalled"] for row in r.history]
    assert flags[0] == 0 and all(flags[1:]), flags  # never in the first epoch; every later one here
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert [row["stalled"] for row in csv.DictReader(f)] == [str(v) for v in flags]


def test_a_dead_run_is_told_to_start_again(tmp_path, tiny, capsys, monkeypatch):
    """What the paper's recipe does to its net on 10 classes (docs/RECIPE.md), made here by hand: every
    ReLU below the classifier off for every image, so that only the classifier's bias can learn."""
    from alexnet.training import trainer as trainer_module

    real = trainer_module.create_model

    def dead_model(*args, **kwargs):
        model = real(*args, **kwargs)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.bias.fill_(-1e4)
        return model

    monkeypatch.setattr(trainer_module, "create_model", dead_model)
    r = train(_config(tmp_path, epochs=3, val_split=0.0, lighting=0.0, ten_crop=False, lr=0.003),
              dataset=_unlearnable(tiny), progress=True)
    out = capsys.readouterr().out
    assert out.count("warning: the network is dead and will not learn") == 1, out
    assert "0.0% of the last hidden layer's units" in out and "--warmup-epochs" in out and "--lr" in out
    assert [row["stalled"] for row in r.history] == [0, 1, 1]


def test_a_learning_run_is_not_called_stalled(tmp_path, tiny, capsys):
    r = train(_config(tmp_path, epochs=6, lr=0.003, val_split=0.0, lighting=0.0, ten_crop=False),
              dataset=tiny, progress=True)
    assert not any(row["stalled"] for row in r.history)
    out = capsys.readouterr().out
    assert "not learned" not in out and "dead" not in out


def test_validation_data_with_its_own_class_list_is_matched_by_name(tmp_path, tiny, one_thread):
    """Validation images prepared with their own class list (here: two of the four classes, in the other
    order) are numbered as the training data's classes: the same errors as the same images numbered
    that way; a class the training data lacks is refused in one line."""
    from alexnet.errors import UserError

    names = [c["name"] for c in tiny.classes]
    keep = np.flatnonzero(np.isin(tiny.labels, [1, 2]))
    images = np.stack([tiny.get_uint8(int(i)) for i in keep])
    same = ArrayDataset(images, tiny.labels[keep], classes=names)
    own = ArrayDataset(images, 2 - tiny.labels[keep], classes=[names[2], names[1]])  # 2 -> 0, 1 -> 1
    runs = [train(_config(tmp_path / str(k), epochs=1, ten_crop=False), dataset=tiny, val_dataset=v,
                  progress=False) for k, v in enumerate((same, own))]
    assert runs[1].history[0]["val_top1_err"] == runs[0].history[0]["val_top1_err"]
    # numbered as the training classes without the match, the same images score otherwise
    wrong = ArrayDataset(images, 2 - tiny.labels[keep], classes=names)
    unmatched = train(_config(tmp_path / "w", epochs=1, ten_crop=False), dataset=tiny, val_dataset=wrong,
                      progress=False)
    assert unmatched.history[0]["val_top1_err"] != runs[0].history[0]["val_top1_err"]
    stranger = ArrayDataset(images, np.zeros(len(keep), np.int64), classes=["zebra"])
    with pytest.raises(UserError, match=r"the validation data's 1 classes do not match the training data's 4: "
                                        r"1 of the validation data's \(zebra\) are not among"):
        train(_config(tmp_path / "z", epochs=1), dataset=tiny, val_dataset=stranger, progress=False)


def test_a_net_back_at_chance_after_learning_is_called_collapsed_not_a_plateau(tmp_path, tiny):
    """An epoch at chance after an epoch that had learned: the message says the net collapsed (the lr too
    high), where best.pt is, and a lower --lr; before anything was learned it is the plateau note."""
    from alexnet.training.trainer import Trainer

    t = Trainer(_config(tmp_path, lr=0.03), dataset=tiny, run_dir=tmp_path / "run", fresh=True, progress=False)
    try:
        chance = t.train_chance
        at_chance = {"loss": chance["loss"], "top1_err": chance["err"]}
        t.epoch, t.lr = 3, 0.03
        t.history = [{"epoch": 1, "train_top1_err": chance["err"] - 0.05},
                     {"epoch": 2, "train_top1_err": chance["err"] - 0.05}]
        assert t._learned_before() is None  # 5 points below chance: not yet "learned"
        assert t._stalled_message(at_chance, alive=0.5).startswith("note: the network has not learned anything yet")
        t.history.append({"epoch": 3, "train_top1_err": 0.2})
        t.best = {"val_top1_err": 0.25, "epoch": 3}
        message = t._stalled_message(at_chance, alive=0.5)
        assert message.startswith("warning: the network collapsed to chance: in epoch 4 the training loss")
        assert "after a training error of 20.00% in epoch 3" in message
        assert "best.pt keeps epoch 3 (validation top-1 error 25.00%)" in message
        assert message.endswith("Start again with a lower --lr (now 0.03), e.g. 0.01 (docs/RECIPE.md)")
    finally:
        for loader in (t.train_loader, t.val_loader):
            loader.close()


def test_a_better_earlier_epoch_is_named_with_its_checkpoint(tmp_path, tiny, capsys):
    """summary.json records the best epoch; when the last epoch is worse by a point or more the run says
    that the weights file holds the last epoch's weights and best.pt the better one's."""
    from alexnet.training.trainer import Trainer

    t = None

    def claim_a_better_first_epoch(row):  # as if epoch 1 had scored 0% on validation
        if row["epoch"] == 2:
            t.best = {"val_top1_err": 0.0, "epoch": 1}

    t = Trainer(_config(tmp_path, lr=1e-6, ten_crop=False), dataset=tiny, run_dir=tmp_path / "run", fresh=True,
                progress=True, callback=claim_a_better_first_epoch)
    r = t.run()
    out = capsys.readouterr().out
    assert r.final["best_epoch"] == 1 and r.final["best_val_top1_err"] == 0.0 and r.final["val_top1_err"] > 0.01
    assert (f"note: epoch 1 was better (validation top-1 error 0.00%); the weights file holds the last epoch's "
            f"weights, {r.run_dir / 'best.pt'} epoch 1's") in out
    assert json.loads((r.run_dir / "summary.json").read_text())["best_epoch"] == 1
    plain = train(_config(tmp_path / "plain", epochs=1, ten_crop=False), dataset=tiny, progress=False)
    assert plain.final["best_epoch"] == 1 and plain.final["best_val_top1_err"] == plain.final["val_top1_err"]


def test_a_run_shorter_than_its_warm_up_says_so(tmp_path, tiny, capsys):
    train(_config(tmp_path, epochs=1, warmup_epochs=2, ten_crop=False), dataset=tiny, progress=True)
    out = capsys.readouterr().out
    assert re.search(r"note: the run ends \(3 steps\) inside its 6-step warm-up: the learning rate rises to "
                     r"0\.00\d+, never to --lr 0\.01", out), out


def test_the_resume_command_under_torchrun_names_its_processes(tmp_path, tiny):
    from alexnet.training.distributed import DistContext
    from alexnet.training.trainer import Trainer

    t = Trainer(_config(tmp_path), dataset=tiny, run_dir=tmp_path / "run", fresh=True, progress=False)
    try:
        assert t._resume_command() == f"alexnet train --resume {tmp_path / 'run'}"
        t.dist = DistContext(rank=0, world_size=4)
        assert t._resume_command().startswith(f"torchrun --standalone --nproc_per_node 4 -m alexnet train "
                                              f"--resume {tmp_path / 'run'}")
        # images given in memory (an experiment's subset): `alexnet train --resume` would train on all of
        # --data, so the interrupt does not offer it (the final walkthrough followed it into other data)
        assert "given in memory" in t._continue_hint() and "alexnet train" not in t._continue_hint()
        t.given_in_memory = False
        assert t._continue_hint().startswith("; continue with: torchrun")
    finally:
        for loader in (t.train_loader, t.val_loader):
            loader.close()


def test_chance_level_of_unbalanced_labels():
    data = ArrayDataset(np.zeros((10, 8, 8, 3), np.uint8), [0] * 6 + [1] * 3 + [2], classes=["a", "b", "c"])
    c = label_chance(data, None, 3)
    assert c["err"] == pytest.approx(0.4)  # always answer class 0
    assert c["loss"] == pytest.approx(-(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)))
    assert label_chance(data, [6, 7], 3) == pytest.approx({"err": 0.0, "loss": 0.0, "present": 1})
    assert c["present"] == 3


def test_the_header_says_how_many_of_the_classes_the_data_holds(tmp_path, capsys):
    """A 6-way net trained on images of 2 of its classes (Imagenette prepared with the 1000 ImageNet
    classes is the usual case): the header says so."""
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.integers(0, 255, (32, 36, 36, 3), dtype=np.uint8), [0, 4] * 16,
                        classes=list("abcdef"))
    train(_config(tmp_path, epochs=1, ten_crop=False, max_steps=1), dataset=data, progress=True)
    assert "6 classes, 2 of them in the training images" in capsys.readouterr().out


def test_temporaries_of_an_interrupted_write_are_removed_on_resume(tmp_path, tiny, capsys):
    r = train(_config(tmp_path, epochs=1, ten_crop=False), dataset=tiny, progress=False)
    stale = [r.run_dir / ".last.pt.tmp4242", r.run_dir / ".weights.safetensors.tmp99", r.run_dir / ".metrics.csv.tmp7"]
    for p in stale:
        p.write_bytes(b"half")
    keep = r.run_dir / "notes.tmp1"  # not a name the trainer writes: left alone
    keep.write_text("mine")
    resume(r.run_dir, dataset=tiny, epochs=2, progress=True)
    assert not any(p.exists() for p in stale) and keep.exists()
    assert "removed 3 temporary file(s)" in capsys.readouterr().out


def test_a_run_stopped_before_its_first_checkpoint_can_be_started_again(tmp_path, tiny):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("arch: cifar_4layer\n")  # what a run killed in its first epoch leaves
    with pytest.raises(Exception, match="stopped before its first one; start it again"):
        resume(run, dataset=tiny, progress=False)
    r = train(_config(tmp_path, epochs=1, ten_crop=False), dataset=tiny, progress=False)
    assert r.run_dir == run and (run / "last.pt").is_file()


def test_resume_given_what_is_not_a_run_says_what_it_is(tmp_path):
    from alexnet.errors import UserError

    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    with pytest.raises(UserError, match=rf"^{data} is a prepared dataset, not a run directory: train on it with "
                                        rf"--data {data}$"):
        resume(data, progress=False)
    with pytest.raises(UserError, match=r"is not a run directory \(no config.yaml, no last.pt\)"):
        resume(tmp_path, progress=False)


def test_validation_is_not_a_silent_phase(tmp_path, tiny, capsys, monkeypatch):
    """Without a terminal, a long validation prints a line now and then (here: every time, for the test)."""
    from alexnet import progress as eval_progress

    real = eval_progress.Progress.__init__
    monkeypatch.setattr(eval_progress.Progress, "__init__",
                        lambda self, *a, **kw: real(self, *a, **{**kw, "log_every_s": 0.0}))
    train(_config(tmp_path, epochs=1, ten_crop=True), dataset=tiny, progress=True)
    err = capsys.readouterr().err
    assert "validation: 1/1 batch" in err and "validation, 10 crops: 1/1 batch" in err, err


def test_the_start_banner_states_the_real_budget(tmp_path, tiny, capsys):
    train(_config(tmp_path, epochs=3, max_steps=2, ten_crop=False), dataset=tiny, progress=True)
    out = capsys.readouterr().out
    assert "2 steps (--max-steps; 3 epochs would be 9) of 16" in out, out


def test_training_and_alexnet_evaluate_give_the_same_errors(tmp_path):
    """One evaluation loop: the run's final centre-crop and 10-crop errors are what ``evaluate`` gives
    on its weights file and the same held-out images."""
    import alexnet
    from alexnet.data import split_indices
    from alexnet.evaluation import evaluate

    images, labels, classes = make_demo_images(120, 36, seed=5, num_classes=10)
    data = ArrayDataset(images, labels, classes=classes)  # 10 classes: top-5 says something too
    r = train(_config(tmp_path, epochs=3, lr=0.02), dataset=data, progress=False)
    _, val_idx = split_indices(len(data), 0.25, r.config.seed)
    model = alexnet.load(r.run_dir)
    for crops, key in ((1, "val"), (10, "ten_crop")):
        result = evaluate(model, data, crops=crops, indices=val_idx, batch_size=7, progress=False)
        assert result.images == len(val_idx)
        assert result.top1_error == r.final[f"{key}_top1_err"], crops
        assert result.top5_error == r.final[f"{key}_top5_err"], crops


def test_the_run_directory_says_what_ran(tmp_path, tiny):
    """config.yaml keeps what was asked ("auto", None); resolved.yaml what that became here."""
    r = train(_config(tmp_path, epochs=1, device="auto", max_steps=2), dataset=tiny, progress=False)
    asked = yaml.safe_load((r.run_dir / "config.yaml").read_text())
    ran = yaml.safe_load((r.run_dir / "resolved.yaml").read_text())
    assert asked["device"] == "auto" and asked["compile"] is None and asked["precision"] == "auto"
    assert ran["device"] == "cpu" and ran["precision"] == "fp32" and ran["compile"] is False
    assert ran["channels_last"] is True  # cifar_4layer has no grouped convolutions
    assert ran["crop_size"] == 32 and ran["batch_per_process"] == 16 and ran["world_size"] == 1
    assert ran["steps_per_epoch"] == 3 and ran["total_steps"] == 2 and ran["warmup_steps"] == 0
    assert ran["threads"] == torch.get_num_threads() and ran["torch"] == torch.__version__
    assert ran["compile_mode"] == "default" and ran["grouped_conv"] == "cudnn" and ran["augment"] == "workers"
    assert ran["compile_cache"] is None  # not compiled (test_training_compile_cache.py: compiled)


def test_the_paper_net_stays_nchw_on_a_cpu():
    from alexnet.training.distributed import DistContext
    from alexnet.training.resolve import resolve

    paper = resolve(TrainConfig(arch="alexnet", device="cpu"), DistContext())
    owt = resolve(TrainConfig(arch="alexnet_owt", device="cpu"), DistContext())
    assert not paper.channels_last and owt.channels_last  # grouped convolutions are slower in NHWC here
    assert paper.crop_size == 224 and owt.pixel_std is not None and paper.pixel_std is None


@pytest.mark.slow
def test_the_speed_switches_compute_the_same(tmp_path, tiny):
    """--compile-mode reduce-overhead (CUDA graphs on a GPU) gives the losses of the plain run: a speed
    setting, not a recipe change (--grouped-conv: tests/test_models.py)."""
    def losses(**kw):
        r = train(_config(tmp_path / str(len(kw)) / "_".join(map(str, kw.values())), epochs=1,
                          val_split=0.0, **kw), dataset=tiny, progress=False)
        return r.history[-1]["train_loss"]

    eager, compiled = losses(compile=False), losses(compile=True)
    assert losses(compile=True, compile_mode="reduce-overhead") == pytest.approx(compiled, rel=1e-6)
    assert compiled == pytest.approx(eager, rel=1e-2)  # fused kernels round differently, nothing more


def test_fused_optimizer_trains_the_same(tmp_path, tiny, one_thread):
    """--fused-optimizer changes how the update runs, not what it computes: the same losses and errors."""
    runs = [train(_config(tmp_path / str(fused), epochs=2, fused_optimizer=fused), dataset=tiny, progress=False)
            for fused in (False, True)]
    assert runs[1].config.fused_optimizer and runs[1].history[0]["train_loss"] > 0
    for a, b in zip(runs[0].history, runs[1].history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_top1_err"] == a["val_top1_err"]


@pytest.mark.parametrize("optimizer", ["paper", "sgd"])
def test_cuda_graph_step_trains_the_same(tmp_path, tiny, one_thread, optimizer):
    """--cuda-graph's step (captured on a GPU; on a CPU the same code uncaptured: the learning rate read
    from a device tensor, the meter's step from a device counter) takes the steps of the plain one, with
    a learning rate that changes every step (warm-up) and two param groups (biases at twice the rate)."""
    kw = dict(epochs=2, optimizer=optimizer, warmup_epochs=2, bias_lr_factor=2.0, bias_decay=False)
    runs = [train(_config(tmp_path / str(graph), cuda_graph=graph, **kw), dataset=tiny, progress=False)
            for graph in (False, True)]
    assert yaml.safe_load((runs[1].run_dir / "resolved.yaml").read_text())["cuda_graph"] is False  # a CPU
    assert runs[0].history[0]["lr"] != runs[0].history[1]["lr"]
    for a, b in zip(runs[0].history, runs[1].history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["train_top1_err"] == a["train_top1_err"] and b["val_top1_err"] == a["val_top1_err"]
    for k, v in runs[0].model.state_dict().items():
        torch.testing.assert_close(runs[1].model.state_dict()[k], v, rtol=1e-4, atol=1e-6)


def test_cuda_graph_step_counts_a_non_finite_loss_at_its_step(tmp_path, tiny, one_thread):
    """The graphed step's meter remembers the first non-finite step from its device counter: the run
    stops with the message naming the step the plain run names."""
    from alexnet.training import NonFiniteLossError

    messages = []
    for graph in (False, True):
        with pytest.raises(NonFiniteLossError) as e:
            train(_config(tmp_path / str(graph), lr=1e30, cuda_graph=graph), dataset=tiny, progress=False)
        messages.append(str(e.value))
    assert "at step " in messages[0] and messages[1] == messages[0].replace(str(tmp_path / "False"),
                                                                           str(tmp_path / "True"))


def test_cuda_graph_run_resumed_mid_epoch_ends_where_the_whole_run_does(tmp_path, tiny, one_thread):
    """A --cuda-graph run stopped after 4 steps (mid-epoch 2) and resumed takes the whole run's steps: the
    graphed step is made again at the resumed step, its counter and learning rates from the checkpoint."""
    kw = dict(epochs=2, cuda_graph=True, warmup_epochs=2, ten_crop=False)
    whole = train(_config(tmp_path / "whole", **kw), dataset=tiny, progress=False)
    cut = train(_config(tmp_path / "cut", max_steps=4, **kw), dataset=tiny, progress=False)
    assert cut.final["steps"] == 4
    done = resume(cut.run_dir, dataset=tiny, progress=False, max_steps=0)
    assert done.final["steps"] == whole.final["steps"] == 2 * 3
    for k, v in whole.model.state_dict().items():
        assert torch.equal(done.model.state_dict()[k], v), k
    assert done.history[-1]["train_loss"] == pytest.approx(whole.history[-1]["train_loss"], rel=1e-6)


def test_cuda_graph_is_refused_with_a_compile_mode_that_makes_graphs():
    from alexnet.errors import UserError

    with pytest.raises(UserError, match="--cuda-graph captures the whole step itself"):
        TrainConfig(cuda_graph=True, compile_mode="reduce-overhead")
    TrainConfig(cuda_graph=True, compile_mode="reduce-overhead", compile=False)  # not compiled: no conflict
    TrainConfig(cuda_graph=True, compile_mode="max-autotune-no-cudagraphs")


def test_augment_on_chooses_the_loader_path_and_trains_the_same(tmp_path, tiny, one_thread):
    """--augment-on batched (the CUDA default) on a CPU: the same batches, so the same losses and errors
    as the per-image path, and resolved.yaml says which ran."""
    from alexnet.errors import UserError

    runs = {how: train(_config(tmp_path / how, epochs=2, augment_on=how), dataset=tiny, progress=False)
            for how in ("workers", "batched")}
    for how, r in runs.items():
        assert yaml.safe_load((r.run_dir / "resolved.yaml").read_text())["augment"] == how
    for a, b in zip(runs["workers"].history, runs["batched"].history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_top1_err"] == a["val_top1_err"]
    with pytest.raises(UserError, match="--augment-on must be one of auto, batched, workers"):
        TrainConfig(augment_on="gpu")


def test_curves_title_shortens_a_long_data_path():
    """A 150-character absolute --data ran off both edges of curves.png's title."""
    from types import SimpleNamespace

    from alexnet.training.trainer import Trainer

    long = "/" + "/".join(["a-rather-long-folder-name"] * 5) + "/imagenette"
    fake = SimpleNamespace(data_desc=long, config=SimpleNamespace(data=long, arch="alexnet"))
    assert Trainer._curves_title.fget(fake) == "alexnet on …/a-rather-long-folder-name/imagenette"
    short = SimpleNamespace(data_desc="/data/nette", config=SimpleNamespace(data="/data/nette", arch="alexnet"))
    assert Trainer._curves_title.fget(short) == "alexnet on /data/nette"


def test_a_dataset_that_is_not_ours_is_one_line(tmp_path, tiny):
    """train(cfg, dataset=torchvision.datasets.FakeData(...)) failed with AttributeError: 'classes'."""
    class Pairs:  # what a torchvision dataset offers: len and (image, label) items
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(3, 8, 8), 0

    with pytest.raises(UserError, match="dataset= takes a PreparedDataset or an ArrayDataset .* got Pairs"):
        train(_config(tmp_path, epochs=1), dataset=Pairs(), progress=False)
    with pytest.raises(UserError, match="val_dataset= takes a PreparedDataset"):
        train(_config(tmp_path, epochs=1), dataset=tiny, val_dataset=Pairs(), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_crop_the_net_cannot_take_is_one_line_before_the_run_directory(tmp_path, tiny):
    with pytest.raises(UserError, match="--crop-size 20: cifar_4layer takes 3x32x32 input"):
        train(_config(tmp_path, epochs=1, crop_size=20), dataset=tiny, progress=False)
    assert not (tmp_path / "run").exists()


def test_resume_hint_false_leaves_the_continue_line_to_the_caller(tmp_path, tiny, capsys):
    """A walkthrough: a stopped ablation said both 'continue it from the program that started it' (the
    trainer's) and 'continue with: alexnet experiment ablations ... --resume' (the experiment's)."""
    import os
    import signal

    for hint in (True, False):
        r = train(_config(tmp_path / str(hint), epochs=3), dataset=tiny, progress=True, resume_hint=hint,
                  callback=lambda row: os.kill(os.getpid(), signal.SIGINT))
        out = capsys.readouterr().out
        assert r.interrupted == "SIGINT" and "checkpoint saved" in out, out
        assert ("continue it from the program that started it" in out) == hint, out


def _hostile(state, change):
    import copy

    state = copy.deepcopy(state)
    change(state)
    return state


@pytest.mark.parametrize("change, needle", [
    # a pickled structure of 10**8 items in a few KB (shared references survive weights_only loading)
    (lambda s: s.update(history=[[[[[[[[["lol"] * 10] * 10] * 10] * 10] * 10] * 10] * 10] * 10]),
     "more than 1,000,000 values nested in it"),
    (lambda s: s["config"].update(name=[[[[[[[["lol"] * 10] * 10] * 10] * 10] * 10] * 10] * 10]),
     "more than 1,000,000 values nested in it"),
    (lambda s: next(iter(s["optimizer"]["state"].values())).update(
        momentum_buffer=torch.zeros(1).expand(2**34)), "stride 0"),
    (lambda s: s["position"].update(epoch=10**18, step=10**18), "position's epoch must be a whole number"),
    (lambda s: s.update(meter=[1]), "meter must be 4 finite numbers"),
    (lambda s: s.update(best={}), "best must be a validation error"),  # (crashed after the epoch)
    (lambda s: s.update(config=[1, 2]), "config must be a mapping"),
    (lambda s: s.update(history=["a"]), "history must be a list of mappings"),
    (lambda s: s.update(threads=-1), "threads must be a whole number >= 1"),
    (lambda s: s.update(epoch_seconds="abc"), "epoch_seconds must be a finite number"),
    (lambda s: s.update(version="9"), "not an alexnet training checkpoint"),
    (lambda s: s["optimizer"]["param_groups"][0].update(lr=float("nan")), "a learning rate of 'nan'"),
    (lambda s: next(iter(s["optimizer"]["state"].values())).update(momentum_buffer=torch.zeros(3)),
     "an optimizer momentum_buffer of shape (3,)"),
    (lambda s: s["model"].update({k: v.to(torch.int32) for k, v in s["model"].items() if k.endswith("bias")}),
     "holds torch.int32, not torch.float32"),
])
def test_a_hostile_checkpoint_is_refused_in_one_line_before_it_costs(tmp_path, tiny, change, needle):
    """A hostile-input audit: a 9 MB last.pt of shared references took 4.6 GB and 72 s; a stride-0
    momentum buffer asked for 68 GB; a position of 10**18 epochs 'finished' the run; wrong types crashed."""
    from alexnet.training import resume
    from alexnet.training.checkpoint import load_checkpoint

    r = train(_config(tmp_path, epochs=2), dataset=tiny, progress=False, callback=lambda row: True)
    path = r.run_dir / "last.pt"
    state = load_checkpoint(path)
    torch.save(_hostile(state, change), path)
    with pytest.raises(UserError) as e:
        resume(r.run_dir, dataset=tiny, progress=False)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    torch.save(state, path)  # the checkpoint as written resumes
    assert len(resume(r.run_dir, dataset=tiny, progress=False).history) == 2
    summary = json.loads((r.run_dir / "summary.json").read_text())
    assert summary["resumed_at_step"] == 3 and "resumed_at_step" not in summary["time"]
