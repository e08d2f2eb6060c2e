"""Ablations driver: the switches, the table in the paper's form, one tiny end-to-end run and the CLI."""

from __future__ import annotations

import json
from dataclasses import asdict

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
