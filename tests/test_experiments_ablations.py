"""Ablations driver: the switches, the table in the paper's form, one tiny end-to-end run and the CLI."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from alexnet.cli.main import main
from alexnet.errors import UserError
from alexnet.experiments.ablations import (
    ABLATIONS,
    AblationConfig,
    AblationResult,
    AblationTable,
    run_ablations,
)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: OpenMP teams thrash a shared, busy CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


def test_every_switch_builds_the_model_it_names():
    from alexnet.models import create_model

    with torch.device("meta"):  # shapes only: no 61M-parameter initialisation
        full = create_model("alexnet", num_classes=10)
    for name, a in ABLATIONS.items():
        with torch.device("meta"):
            model = create_model("alexnet", num_classes=10, **a.model_options)
        n_full = sum(p.numel() for p in full.parameters())
        n = sum(p.numel() for p in model.parameters())
        if name == "one_tower":
            assert n < n_full  # half the kernels in conv1-conv4
        else:
            assert n == n_full  # LRN, pooling, dropout and lighting have no parameters
        kinds = {type(m).__name__ for m in model.modules()}
        if name == "no_lrn":
            assert "LocalResponseNorm" not in kinds
        if name == "no_dropout":
            assert "Dropout" not in kinds
        if name == "no_overlap":
            pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
            assert pools and all(p.kernel_size == 2 for p in pools)
    assert not ABLATIONS["no_lighting"].lighting and ABLATIONS["full"].lighting


def _result(name, t1, t5, t1_10, t5_10):
    return AblationResult(name, t1, t5, t1_10, t5_10, train_error=0.5, images=100, train_seconds=1, eval_seconds=1)


def test_table_differences_and_paper_column():
    cfg = AblationConfig(epochs=3)
    table = AblationTable(cfg, {"full": _result("full", 0.40, 0.20, 0.38, 0.18),
                                "no_lrn": _result("no_lrn", 0.415, 0.21, 0.39, 0.195)}, 900, 100)
    rows = {r["name"]: r for r in table.rows()}  # fractions, like the results (and ablations.json)
    assert rows["no_lrn"]["d_top1"] == pytest.approx(0.015) and rows["no_lrn"]["d_top5_10"] == pytest.approx(0.015)
    assert rows["full"]["d_top1"] is None
    md = table.markdown()  # percent, and percentage points for the differences
    lines = md.splitlines()
    assert lines[0].startswith("| model |") and "paper's Δ (pp)" in lines[0] and "Δ vs full, 1 crop (pp)" in lines[0]
    no_lrn = next(line for line in lines if line.startswith("| `no_lrn`"))
    assert "| 41.50% | 21.00% | 39.00% | 19.50% |" in no_lrn and no_lrn.endswith("| 50.00% |")
    assert "+1.50 / +1.00" in no_lrn and "+1.00 / +1.50" in no_lrn and "+1.4 / +1.2" in no_lrn
    assert "3 epoch(s) on 900 training images" in md


def test_result_json_is_read_back_in_fractions_also_when_written_in_percent():
    new = _result("no_lrn", 0.415, 0.21, None, None)
    assert AblationResult.from_json(json.dumps(asdict(new))) == new
    old = {**asdict(new), "top1": 41.5, "top5": 21.0, "train_error": 50.0}  # before errors were fractions
    back = AblationResult.from_json(json.dumps(old))
    assert (back.top1, back.top5, back.train_error) == pytest.approx((0.415, 0.21, 0.5)) and back.top1_10 is None


def test_config_names_always_include_the_reference():
    assert AblationConfig(epochs=1, only=["no_lrn"]).names == ["full", "no_lrn"]
    assert AblationConfig(epochs=1).names == list(ABLATIONS)
    with pytest.raises(UserError, match="unknown ablation"):
        AblationConfig(epochs=1, only=["no_relu"]).validate()
    with pytest.raises(UserError, match="epochs"):
        AblationConfig(epochs=0).validate()


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory):
    """24 random 224x224 images of 2 classes, prepared raw (the paper's model needs 224 crops)."""
    from alexnet.data import prepare_dataset
    from conftest import random_image_folder

    root = tmp_path_factory.mktemp("abl")
    random_image_folder(root, 12, 224)
    prepare_dataset(root / "src", root / "prep", size=224, format="raw", workers=1, progress=False)
    return root / "prep"


@pytest.mark.slow
def test_tiny_run_end_to_end_with_resume(tiny_prepared, tmp_path):
    cfg = AblationConfig(epochs=1, batch_size=4, only=["no_dropout"], ten_crop=False, val_fraction=0.25, workers=1)
    table = run_ablations(tiny_prepared, cfg, out_dir=tmp_path, log=None)
    assert list(table.results) == ["full", "no_dropout"]
    assert (table.train_images, table.val_images) == (18, 6)
    for name in ("full", "no_dropout"):
        r = table.results[name]
        assert 0 <= r.top1 <= 1 and 0 <= r.top5 <= r.top1 and r.top1_10 is None
        run = tmp_path / name
        import yaml

        assert yaml.safe_load((run / "config.yaml").read_text())["model_options"] == ABLATIONS[name].model_options
        assert "val_top1_err" in (run / "metrics.csv").read_text()
        import alexnet

        model = alexnet.load(run)  # a run directory the report and evaluate can read
        assert model.meta.options == ABLATIONS[name].model_options
    assert (tmp_path / "ablations.md").read_text().startswith("| model |")
    # resume: nothing is trained again, results come back from result.json
    again = run_ablations(tiny_prepared, cfg, out_dir=tmp_path, resume=True, log=None)
    assert again.results["no_dropout"] == table.results["no_dropout"]


@pytest.mark.slow
def test_cli_ablations_with_ten_crops(tiny_prepared, tmp_path, capsys):
    rc = run_cli(["experiment", "ablations", "--data", str(tiny_prepared), "--epochs", "1", "--batch-size", "4",
                  "--only", "no_lrn", "--val-fraction", "0.25", "--out", str(tmp_path), "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| `no_lrn` |" in out and "top-1 (10 crops)" in out


@pytest.mark.parametrize("argv, message", [
    (["--data", "/no/such/prepared", "--epochs", "1"], "not found"),
    (["--data", "{prep}", "--epochs", "1", "--only", "no_relu"], "unknown ablation"),
    (["--data", "{prep}", "--epochs", "0"], "epochs must be at least 1"),
    (["--data", "{prep}", "--epochs", "1", "--train-subset", "2"], "fewer than one batch"),
    (["--data", "{prep}", "--epochs", "1", "--threads", "0"], "argument --threads: must be in 1..4096, got 0"),
    (["--data", "{prep}", "--epochs", "1", "--seed", "-1"], "seed must be an integer in 0.."),
    (["--data", "{prep}", "--epochs", "1", "--seed", str(2**63)], "seed must be an integer in 0.."),
])
def test_cli_errors_are_one_line(tiny_prepared, capsys, argv, message):
    argv = [a.replace("{prep}", str(tiny_prepared)) for a in argv]
    assert run_cli(["experiment", "ablations", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_every_variants_model_options_are_checked_before_anything_trains(monkeypatch):
    """--arch cifar_4layer once trained full and no_lrn, then failed on no_overlap's overlap_pool."""
    import alexnet.experiments.ablations as abl

    def no_training(*a, **k):
        raise AssertionError("trained before the options were checked")

    monkeypatch.setattr(abl, "train_and_evaluate", no_training)
    with pytest.raises(UserError, match="ablation no_overlap cannot be made with --arch cifar_4layer"):
        AblationConfig(epochs=1, arch="cifar_4layer").validate()
    with pytest.raises(UserError, match="ablation no_overlap"):
        run_ablations("/no/such/prepared", AblationConfig(epochs=1, arch="cifar_4layer"), log=None)
    AblationConfig(epochs=1, arch="cifar_4layer", only=["no_lrn"]).validate()  # options it has: fine
    for seed in (-1, 2**63, True):
        with pytest.raises(UserError, match="seed must be"):
            AblationConfig(epochs=1, seed=seed).validate()
    AblationConfig(epochs=1, seed=2**63 - 1).validate()


# ------------------------------------------------------------------------------ --resume and interrupts
ABL_FLAGS = ["--epochs", "1", "--batch-size", "4", "--only", "no_dropout", "--no-ten-crop", "--val-fraction", "0.25"]


def fake_training(monkeypatch, interrupted: str | None = None) -> list:
    """``alexnet.training.train`` / ``resume`` replaced by a result at once (no model trained), or an
    interruption after which the run directory holds a checkpoint, as the trainer's does; the calls are
    recorded as (which, model, keyword arguments)."""
    from pathlib import Path

    import alexnet.training
    from alexnet.training import TrainConfig, TrainResult

    calls = []

    def result(config, run_dir):
        if interrupted:
            (Path(run_dir) / "last.pt").parent.mkdir(parents=True, exist_ok=True)
            (Path(run_dir) / "last.pt").write_bytes(b"a checkpoint")
        return TrainResult(config=config, run_dir=Path(run_dir), history=[{"train_top1_err": 0.5}],
                           final={"val_top1_err": 0.4, "val_top5_err": 0.2}, interrupted=interrupted)

    def train(config, **kw):
        calls.append(("train", Path(config.out).name, kw))
        return result(config, config.out)

    def resume(run_dir, **kw):
        calls.append(("resume", Path(run_dir).name, kw))
        return result(TrainConfig(), run_dir)

    monkeypatch.setattr(alexnet.training, "train", train)
    monkeypatch.setattr(alexnet.training, "resume", resume)
    return calls


def no_training(monkeypatch, opening: bool = True) -> None:
    """Training (and, unless ``opening``, opening the data) fails the test."""
    import alexnet.data
    import alexnet.training

    def fail(*a, **k):
        raise AssertionError("trained (or opened the data) although it should not have")

    monkeypatch.setattr(alexnet.training, "train", fail)
    monkeypatch.setattr(alexnet.training, "resume", fail)
    if not opening:
        monkeypatch.setattr(alexnet.data, "PreparedDataset", fail)


def files_under(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tiny_prepared, tmp_path, monkeypatch):
    """--out of a finished run (full and no_dropout, results from fake_training): (data, out)."""
    out = tmp_path / "abl"
    with monkeypatch.context() as m:
        fake_training(m)
        assert run_cli(["experiment", "ablations", "--data", str(tiny_prepared), *ABL_FLAGS, "--out", str(out)]) == 0
    assert sorted(files_under(out)) == ["ablations.json", "ablations.md", "full/result.json", "no_dropout/result.json"]
    return tiny_prepared, out


@pytest.mark.parametrize("argv, was, now", [
    (["--epochs", "2"], "--epochs 1", "--epochs 2"),
    (["--lr", "0.02", "--seed", "3"], "--lr 0.01 --seed 0", "--lr 0.02 --seed 3"),
    (["--ten-crop", "--batch-size", "2"], "--batch-size 4 --no-ten-crop", "--batch-size 2 --ten-crop"),
    (["--train-subset", "12"], "no --train-subset", "--train-subset 12"),
    (["--val", "{data}"], "no --val", "--val {data}"),
    (["--data", "{other}"], "--data {data}", "--data {other}"),
])
def test_resume_with_other_settings_is_refused_before_the_data_is_opened(finished, tmp_path, monkeypatch, capsys,
                                                                         argv, was, now):
    import shutil

    data, out = finished
    other = tmp_path / "other"
    shutil.copytree(data, other)  # the same images elsewhere: still another --data
    argv = [a.replace("{data}", str(data)).replace("{other}", str(other)) for a in argv]
    argv = (["--data", str(data)] if "--data" not in argv else []) + \
        (["--epochs", "1"] if "--epochs" not in argv else []) + argv
    before = files_under(out)
    no_training(monkeypatch, opening=False)
    assert run_cli(["experiment", "ablations", *argv, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    was, now = (s.replace("{data}", str(data.resolve())).replace("{other}", str(other)) for s in (was, now))
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"{out / 'ablations.json'} was made with {was} (now: {now}): repeat them" in err, err
    assert "drop --resume to start over in a new --out" in err
    assert files_under(out) == before  # nothing rewritten


def test_resume_takes_the_settings_not_given_and_ignores_those_that_do_not_change_results(finished, monkeypatch,
                                                                                         capsys):
    """--workers, --threads, --eval-batch-size and --device do not change the results: no refusal; the
    settings not given (--batch-size, --no-ten-crop, ...) are the earlier run's, so nothing trains again."""
    data, out = finished
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # --threads sets it; put back after the test
    no_training(monkeypatch)
    assert run_cli(["experiment", "ablations", "--data", str(data), "--epochs", "1", "--workers", "2", "--threads", "1",
                    "--eval-batch-size", "8", "--device", "cpu", "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert (f"resuming {out / 'ablations.json'} with its settings --batch-size 4 --no-ten-crop --val-fraction 0.25 "
            "--only no_dropout") in captured.err
    assert "full: already done" in captured.err and "no_dropout: already done" in captured.err
    assert "| `no_dropout` |" in captured.out and "error" not in captured.err
    assert json.loads((out / "ablations.json").read_text())["config"]["batch_size"] == 4


def test_resume_needs_neither_data_nor_epochs(finished, monkeypatch, capsys):
    """EXPERIMENTS.md: --resume takes the settings left out from ablations.json; --data and --epochs too
    (the parser required them)."""
    data, out = finished
    no_training(monkeypatch)
    assert run_cli(["experiment", "ablations", "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert f"with its settings --data {Path(data).resolve()} --batch-size 4" in captured.err, captured.err
    assert "no_dropout: already done" in captured.err and "| `no_dropout` |" in captured.out
    # a new run still needs both: one line, as argparse says it
    assert run_cli(["experiment", "ablations", "--out", str(out / "new")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the following arguments are required: --data, --epochs" in err[0], err


def test_resume_continues_an_interrupted_model_from_its_checkpoint(finished, monkeypatch, capsys):
    data, out = finished
    (out / "no_dropout" / "result.json").unlink()
    (out / "no_dropout" / "last.pt").write_bytes(b"a checkpoint")
    calls = fake_training(monkeypatch)
    assert run_cli(["experiment", "ablations", "--data", str(data), "--epochs", "1", "--workers", "1",
                    "--out", str(out), "--resume"]) == 0
    assert [(which, model) for which, model, _ in calls] == [("resume", "no_dropout")]  # full kept, nothing fresh
    assert calls[0][2]["workers"] == 1 and calls[0][2]["dataset"] is None
    assert f"no_dropout: continuing its training from {out / 'no_dropout' / 'last.pt'}" in capsys.readouterr().err
    assert json.loads((out / "no_dropout" / "result.json").read_text())["top1"] == pytest.approx(0.4)


def test_an_interrupted_run_names_the_command_that_continues_it(tiny_prepared, tmp_path, monkeypatch, capsys):
    import shlex

    out = tmp_path / "my abl"  # a space: the command quotes it
    fake_training(monkeypatch, interrupted="SIGINT")
    assert run_cli(["experiment", "ablations", "--data", str(tiny_prepared), *ABL_FLAGS, "--out", str(out)]) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("alexnet experiment ablations: interrupted (SIGINT); full's checkpoint and the finished "
                           f"models are kept in {out}; continue with: "), last
    command = shlex.split(last.split("continue with: ", 1)[1])
    assert command == ["alexnet", "experiment", "ablations", "--data", str(tiny_prepared), "--epochs", "1",
                       "--batch-size", "4", "--no-ten-crop", "--val-fraction", "0.25", "--only", "no_dropout",
                       "--out", str(out), "--resume"]
    calls = fake_training(monkeypatch)
    assert run_cli(command[1:]) == 0
    assert [(which, model) for which, model, _ in calls] == [("resume", "full"), ("train", "no_dropout")]


def test_a_second_run_into_the_same_out_is_refused(finished, monkeypatch, capsys):
    data, out = finished
    before = files_under(out)
    no_training(monkeypatch, opening=False)
    assert run_cli(["experiment", "ablations", "--data", str(data), *ABL_FLAGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} already holds a run of the ablations" in err and "continue it with --resume" in err, err
    assert files_under(out) == before


def test_resume_with_nothing_to_resume_starts_and_says_so(tiny_prepared, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new"
    calls = fake_training(monkeypatch)
    assert run_cli(["experiment", "ablations", "--data", str(tiny_prepared), *ABL_FLAGS, "--out", str(out),
                    "--resume"]) == 0
    assert f"note: {out} holds no ablations.json to resume from: starting from the beginning" in capsys.readouterr().err
    assert [(which, model) for which, model, _ in calls] == [("train", "full"), ("train", "no_dropout")]


@pytest.mark.parametrize("make, needle", [
    (lambda: AblationConfig(epochs=1.5), "epochs must be an integer, got 1.5"),
    (lambda: AblationConfig(epochs=2, only="full"), "only must be a list of strings or None"),
    (lambda: __import__("alexnet.experiments.relu_vs_tanh", fromlist=["x"]).ReluTanhConfig(lrs=(0.1, "x")),
     "lrs must be a list of finite numbers"),
])
def test_the_experiments_configs_check_types_from_python(make, needle):
    from alexnet.errors import BadOptionError

    with pytest.raises(BadOptionError, match=needle):
        make().validate()


def test_a_resume_with_another_only_keeps_the_models_finished_before(finished, monkeypatch, capsys):
    """A walkthrough: --resume --only no_lrn after a run of no_dropout wrote a table of full and no_lrn,
    although no_dropout's result was on disk."""
    data, out = finished
    calls = fake_training(monkeypatch)
    assert run_cli(["experiment", "ablations", "--out", str(out), "--resume", "--only", "no_lrn"]) == 0
    assert [(which, model) for which, model, _ in calls] == [("train", "no_lrn")]
    assert "no_dropout: done by an earlier run, kept in the table" in capsys.readouterr().err
    rows = json.loads((out / "ablations.json").read_text())["rows"]
    assert [r["name"] for r in rows] == [n for n in ABLATIONS if n in ("full", "no_lrn", "no_dropout")]
    assert "`no_dropout`" in (out / "ablations.md").read_text()


def test_the_tables_note_says_when_the_warmup_outlasts_the_training():
    from alexnet.experiments.ablations import AblationTable

    short = AblationTable(AblationConfig(epochs=1, batch_size=8), {}, train_images=40, val_images=20)
    assert "a linear warm-up of 150 steps, longer than the 5 steps trained" in short.markdown()
    long = AblationTable(AblationConfig(epochs=10, batch_size=8), {}, train_images=800, val_images=20)
    assert "after 500 steps of linear warm-up" in long.markdown()  # 5 epochs of 100 steps, of 1,000
