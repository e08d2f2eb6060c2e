"""TrainConfig: the paper's defaults, validation, files (YAML/TOML), and one-line CLI errors."""

import json
import re
import subprocess
import sys

import pytest

from alexnet.errors import BadOptionError, UserError
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


_NAN, _INF = float("nan"), float("inf")


@pytest.mark.parametrize("changes,message", [
    ({"epochs": 1.5}, "--epochs must be an integer, got 1.5"),  # trained 2 epochs
    ({"patience": 0.5}, "--patience must be an integer, got 0.5"),
    ({"seed": 1.5}, "--seed must be an integer, got 1.5"),
    ({"epochs": "5"}, "--epochs must be an integer, got '5'"),  # TypeError: '<' not supported
    ({"epochs": True}, "--epochs must be an integer, got True"),
    ({"batch_size": None}, "--batch-size must be an integer, got None"),
    ({"batch_size": 16.5}, "--batch-size must be an integer, got 16.5"),
    ({"crop_size": "32"}, "--crop-size must be an integer or None, got '32'"),
    ({"workers": 2.5}, "--workers must be an integer or None, got 2.5"),
    ({"lr": _NAN}, "--lr must be a finite number, got nan"),
    ({"lr": _INF}, "--lr must be a finite number, got inf"),
    ({"lr": "0.01"}, "--lr must be a finite number, got '0.01'"),
    ({"lr": True}, "--lr must be a finite number, got True"),
    ({"lr": 10**400}, "--lr must be a finite number, got 1000"),
    ({"weight_decay": _NAN}, "--weight-decay must be a finite number, got nan"),
    ({"lighting": _NAN}, "--lighting must be a finite number, got nan"),
    ({"momentum": -_INF}, "--momentum must be a finite number, got -inf"),
    ({"warmup_epochs": _NAN}, "--warmup-epochs must be a finite number or None, got nan"),
    ({"bias_decay": "no"}, "--bias-decay must be true or false, got 'no'"),  # truthy: decay stayed on
    ({"ten_crop": 0}, "--ten-crop must be true or false, got 0"),
    ({"compile": "yes"}, "--compile must be true or false or None, got 'yes'"),
    ({"arch": 3}, "--arch must be a string, got 3"),
    ({"device": None}, "--device must be a string, got None"),
    ({"out": ""}, "--out must not be an empty path"),  # wrote the run into the current directory
    ({"data": ""}, "--data must not be an empty path"),
    ({"val": ""}, "--val must not be an empty path"),
    ({"data": 123}, "--data must be a path or None, got 123"),  # a TypeError later in train
    ({"out": b"runs/a"}, "--out must be a path or None, got b'runs/a'"),
    ({"model_options": [("lrn", False)]}, "model_options must be a mapping"),
    ({"model_options": {1: 2}}, "model_options must be named by strings"),
])
def test_the_python_api_checks_each_type(changes, message):
    """TrainConfig(...) itself, not only from_dict: a one-line BadOptionError naming the flag."""
    with pytest.raises(BadOptionError) as e:
        TrainConfig(**changes)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_long_or_multiline_value_is_shown_on_one_line():
    import numpy as np

    with pytest.raises(BadOptionError) as e:
        TrainConfig(batch_size=np.arange(100).reshape(10, 10))
    text = str(e.value)
    assert text.startswith("--batch-size must be an integer, got array(") and "\n" not in text and len(text) < 120


def test_the_python_api_normalises_integral_floats_ints_and_paths(tmp_path):
    import numpy as np

    c = TrainConfig(batch_size=16.0, epochs=np.int64(3), lr=1, lighting=np.float32(0.5), warmup_epochs=0,
                    data=tmp_path / "d", val=tmp_path / "v", out=tmp_path / "run")
    assert (c.batch_size, c.epochs, c.lr, c.lighting, c.warmup_epochs) == (16, 3, 1.0, 0.5, 0.0)
    assert [type(v) for v in (c.batch_size, c.epochs, c.lr, c.lighting, c.warmup_epochs)] == [int, int] + [float] * 3
    assert (c.data, c.val, c.out) == (str(tmp_path / "d"), str(tmp_path / "v"), str(tmp_path / "run"))
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert c.replace(out=tmp_path / "other").out == str(tmp_path / "other")  # from_dict takes a Path too
    assert TrainConfig(crop_size=None, workers=None, compile=None, warmup_epochs=None) == TrainConfig()


@pytest.mark.parametrize("changes,message", [
    ({"out": ""}, "--out must not be an empty path"),  # was None: the default directory
    ({"data": ""}, "--data must not be an empty path"),  # was None: the demo, e.g. --data "$UNSET"
    ({"val": ""}, "--val must not be an empty path"),
    ({"lr": 10**400}, "--lr must be a finite number"),  # was an OverflowError
    ({"lr": "nan"}, "--lr must be a finite number"),
    ({"epochs": 1.5}, "--epochs must be an integer"),
    ({"bias_decay": "maybe"}, "--bias-decay must be true or false"),
])
def test_from_dict_refuses_the_same_values(changes, message):
    with pytest.raises(BadOptionError) as e:
        TrainConfig.from_dict(changes)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_yaml_values_still_read_as_before(tmp_path):
    """YAML 1.1 reads 1e-3 as a string and 4.0 as a float: from_dict still takes them as the flags would."""
    y = tmp_path / "a.yaml"
    y.write_text("lr: 1e-3\nepochs: 4.0\nwarmup-epochs: 1\nbias_decay: no\ncrop_size: null\ndata: none\n"
                 "weight_decay: 0\nout: runs/x\n")
    values = load_config_file(y)
    assert values["lr"] == "1e-3" and values["bias_decay"] is False  # what PyYAML makes of them
    c = TrainConfig.from_dict(values)
    assert (c.lr, c.epochs, c.warmup_epochs, c.bias_decay, c.crop_size, c.data, c.weight_decay, c.out) == \
        (0.001, 4, 1.0, False, None, None, 0.0, "runs/x")
    assert type(c.epochs) is int and type(c.warmup_epochs) is float


def test_check_field_types_serves_any_config_dataclass():
    """The helper other configs (ReluTanhConfig, AblationConfig) can call with their own words."""
    from dataclasses import dataclass

    from alexnet.training.config import check_field_types

    @dataclass
    class Sweep:
        lrs: tuple[float, ...] = (0.01,)
        only: list[str] | None = None
        steps: int = 1
        out: str = "x"

    def words(name):
        return name.replace("_", " ")

    s = Sweep(lrs=[1, 0.5], only=("a",), steps=2.0)
    check_field_types(s, label=words, paths=("out",))
    assert (s.lrs, s.only, s.steps) == ((1.0, 0.5), ["a"], 2) and type(s.steps) is int
    for bad, message in [({"lrs": (0.1, "x")}, "lrs must be a list of finite numbers, got (0.1, 'x')"),
                         ({"lrs": (0.1, _NAN)}, "lrs must be a list of finite numbers"),
                         ({"only": "full"}, "only must be a list of strings or None, got 'full'"),
                         ({"steps": True}, "steps must be an integer, got True"),
                         ({"out": ""}, "out must not be an empty path")]:
        with pytest.raises(BadOptionError, match=f"^{re.escape(message)}"):
            check_field_types(Sweep(**bad), label=words, paths=("out",))


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


def test_a_config_file_with_yaml_aliases_is_refused_at_once(tmp_path):
    """A hostile-input audit: a 1 KB 'billion laughs' YAML (9**9 shared references) took 11 GB and 60 s
    before a MemoryError; no config needs aliases."""
    from alexnet.training import load_config_file

    levels = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nname: *l8\n")
    with pytest.raises(UserError, match=r"YAML aliases \(\*l0\) are not accepted here"):
        load_config_file(bomb)  # refused while parsing, before anything is built
    nested = tmp_path / "deep.yaml"
    for depth in (100, 5000):  # (5000: deeper than the YAML parser's recursion)
        nested.write_text("name: " + "[" * depth + "]" * depth + "\n")
        with pytest.raises(UserError, match="nested more than 64 levels deep"):
            load_config_file(nested)


@pytest.mark.parametrize("field, value, needle", [
    ("lr", 1e308, "--lr must be at most 1e+30, got 1e+308"),
    ("warmup_epochs", 1e300, "--warmup-epochs must be at most 1,000,000"),
    ("lighting", 1e300, "--lighting must be at most 10"),
    ("epochs", 10**9, "--epochs must be at most 1,000,000"),
])
def test_values_far_past_any_recipe_are_refused(field, value, needle):
    """A hostile-input audit: --lr 1e308 overflowed inside torch, --warmup-epochs 1e300 kept the lr at 0,
    --lighting 1e300 ended as 'loss is not finite ... Try a lower --lr'."""
    import re

    with pytest.raises(BadOptionError, match=re.escape(needle)):
        TrainConfig(**{field: value})
