"""TrainConfig: the paper's defaults, validation, files (YAML/TOML), and one-line CLI errors."""

import json
import subprocess
import sys

import pytest

from alexnet.errors import UserError
from alexnet.training import TrainConfig, departures, load_config_file
from alexnet.training.config import warmup_steps


def test_defaults_are_the_papers_recipe():
    c = TrainConfig()
    assert (c.arch, c.batch_size, c.lr, c.momentum, c.weight_decay, c.epochs) == ("alexnet", 128, 0.01, 0.9, 5e-4, 90)
    assert (c.optimizer, c.schedule, c.max_reductions, c.lr_factor, c.lighting, c.mean) == \
        ("paper", "plateau", 3, 0.1, 0.1, "image")
    assert departures(TrainConfig.paper(data="x")) == []
    # The one departure of the default: a warm-up, said on every run's "departs from" line
    assert TrainConfig.paper() == TrainConfig(warmup_epochs=0)
    assert departures(TrainConfig(data="x")) == [
        "lr warm-up over 5 epochs or 150 steps, whichever is longer (paper: none; --warmup-epochs 0 for the "
        "paper's; docs/RECIPE.md)"]
    assert [warmup_steps(TrainConfig(), n) for n in (10, 27, 30, 10_000)] == [150, 150, 150, 50_000]
    assert warmup_steps(TrainConfig(warmup_epochs=0.5), 10) == 5 and warmup_steps(TrainConfig.paper(), 99) == 0


def test_demo_recipe_and_its_departures_are_stated():
    d = TrainConfig.demo()
    assert d.data is None and d.arch == "alexnet_owt"
    said = "; ".join(departures(d))
    assert "alexnet_owt" in said and "epochs 4" in said and "generated" in said
    # another arch drops the demo's model options (they are alexnet_owt's)
    assert TrainConfig.demo(arch="cifar_4layer").model_options == {}


@pytest.mark.parametrize("changes,needle", [
    ({"lr": -1}, "--lr must be > 0"),
    ({"lr": "fast"}, "--lr must be a finite number"),
    ({"epochs": 0}, "--epochs must be > 0"),
    ({"momentum": 1.0}, "--momentum"),
    ({"val_split": 1.0}, "--val-split"),
    ({"schedule": "linear"}, "--schedule must be one of"),
    ({"optimizer": "adam"}, "--optimizer must be one of"),
    ({"precision": "fp8"}, "--precision"),
    ({"init": "xavier"}, "--init must be one of"),
    ({"device": "gpu"}, "--device"),
    ({"grouped_conv": "fast"}, "--grouped-conv must be one of"),
    ({"compile_mode": "turbo"}, "--compile-mode must be one of"),
    ({"arch": "resnet"}, "unknown model"),
    ({"model_options": {"towers": 3}}, "towers must be 1 or 2"),
    ({"model_options": {"nope": 1}}, "no option 'nope'"),
    ({"batch_size": True}, "--batch-size must be an integer"),
    ({"whatever": 1}, "unknown training option"),
    ({"seed": 99999999999999999999}, "--seed must be below 2**63"),  # torch.manual_seed overflowed
])
def test_bad_values_raise_one_line(changes, needle):
    with pytest.raises(UserError) as e:  # BadOptionError, or UnknownModelError for a name
        TrainConfig.from_dict(changes)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_coercion_from_text():
    c = TrainConfig.from_dict({"lr": "1e-3", "batch-size": "64", "compile": "auto", "ten_crop": "false",
                               "crop_size": "none"})
    assert c.lr == 0.001 and c.batch_size == 64 and c.compile is None and c.ten_crop is False
    assert c.crop_size is None


def test_round_trip_through_dict():
    c = TrainConfig(arch="cifar_4layer", model_options={"activation": "tanh"}, lr=0.03, crop_size=32)
    assert TrainConfig.from_dict(c.to_dict()) == c


def test_yaml_and_toml_files(tmp_path):
    y = tmp_path / "a.yaml"
    y.write_text("lr: 1e-3\nbatch-size: 32\nmodel_options:\n  lrn: false\n")
    t = tmp_path / "a.toml"
    t.write_text('[train]\nlr = 0.001\nbatch_size = 32\nmodel_options = { lrn = false }\n')
    for path in (y, t):
        c = TrainConfig.from_dict(load_config_file(path))
        assert (c.lr, c.batch_size, c.model_options) == (0.001, 32, {"lrn": False})
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nlr: [1\n")
    with pytest.raises(UserError, match=r"not valid YAML: .*\(line 3, column 1\)$"):
        load_config_file(bad)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("epochs = 2\nlr = \n")
    with pytest.raises(UserError, match=r"not valid TOML: .*line 2"):
        load_config_file(bad_toml)
    # a misspelt option: the nearest name, not the list of all 40-odd
    typo = tmp_path / "typo.toml"
    typo.write_text("epoch = 1\n")
    with pytest.raises(UserError, match=r"^unknown training option 'epoch'; did you mean 'epochs'\?$"):
        TrainConfig.from_dict(load_config_file(typo))
    with pytest.raises(UserError, match="must end in"):
        load_config_file(_touch(tmp_path / "a.json"))
    with pytest.raises(UserError, match="not found"):
        load_config_file(tmp_path / "missing.yaml")


def _touch(p):
    p.write_text("{}")
    return p


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "alexnet", "train", *args], capture_output=True, text=True,
                          timeout=180, cwd=cwd)


@pytest.mark.parametrize("args,needle", [
    (("--lr", "-1"), "--lr must be > 0"),
    (("--lr", "abc"), "invalid float value"),
    (("--schedule", "linear"), "--schedule must be one of"),
    (("--init", "zeros"), "--init must be one of"),
    (("--data", "/nonexistent/prepared"), "not found"),
    (("--resume", "/nonexistent/run"), "run directory not found"),
    (("--arch", "alexnet", "--opt", "towers=3"), "towers must be 1 or 2"),
    (("--config", "/nonexistent.yaml"), "config file not found"),
])
def test_cli_bad_values_are_one_line(args, needle, tmp_path):
    r = _cli(*args, "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert lines[0].startswith("alexnet train: error:")


def test_quiet_run_still_prints_its_result_once(tmp_path, capsys, monkeypatch):
    """--quiet silences progress, not the answer (one line, from rank 0 only under torchrun)."""
    from alexnet.cli.main import main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ["train", "--quiet", "--arch", "cifar_4layer", "--demo-images", "40", "--demo-size", "36",
            "--demo-classes", "4", "--epochs", "1", "--batch-size", "8", "--no-ten-crop"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("done: 1 epoch, 4 steps in ") and "validation top-1 error" in out[0], out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())  # a fraction, printed in percent
    assert f"validation top-1 error {100 * summary['val_top1_err']:.2f}%;" in out[0], out
    monkeypatch.setenv("RANK", "1")  # another torchrun process: says nothing
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.strip() == ""


def test_a_config_file_that_is_not_text_is_one_line(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"epochs: \xff\xfe\x00 1\n")
    with pytest.raises(UserError, match=r"cfg.yaml is not text \(UTF-8\)$"):
        load_config_file(path)


def test_a_class_list_that_is_not_text_is_one_line(tmp_path):
    from alexnet.weights.classes import read_class_file

    path = tmp_path / "classes.txt"
    path.write_bytes(b"\xff\xfe n01440764 tench\n")
    with pytest.raises(UserError, match=r"classes.txt is not text \(UTF-8\)$"):
        read_class_file(path)


@pytest.mark.parametrize("text", ["arch: alexnet\nopt: {lrn: false, towers: 1}\n",
                                  "arch: alexnet\nopt: [lrn=false, towers=1]\n",
                                  "arch: alexnet\nmodel-options: {lrn: false, towers: 1}\n"])
def test_a_config_file_names_model_options_as_the_flag_does(tmp_path, text):
    from alexnet.cli.main import build_parser
    from alexnet.cli.train import build_config

    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    cfg = build_config(build_parser().parse_args(["train", "--config", str(path)]))
    assert cfg.arch == "alexnet" and cfg.model_options == {"lrn": False, "towers": 1}
    # --opt overrides the file's value of that option and keeps the others
    cfg = build_config(build_parser().parse_args(["train", "--config", str(path), "--opt", "towers=2"]))
    assert cfg.model_options == {"lrn": False, "towers": 2}


def test_a_config_file_with_opt_and_model_options_is_one_line(tmp_path):
    from alexnet.cli.main import build_parser
    from alexnet.cli.train import build_config

    path = tmp_path / "recipe.yaml"
    path.write_text("opt: {lrn: false}\nmodel_options: {towers: 1}\n")
    with pytest.raises(UserError, match="'opt' and 'model_options' are the same option"):
        build_config(build_parser().parse_args(["train", "--config", str(path)]))
