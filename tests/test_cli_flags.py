"""The command line's flags: generated from the config dataclasses (one description, one default), and the
same words in every subcommand (``--device`` auto, ``--workers`` loading, ``--threads`` torch's operators)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch

from alexnet.cli.common import DEVICE_HELP, set_threads
from alexnet.cli.config_args import field_docs, field_help, show
from alexnet.cli.main import build_parser, main
from alexnet.errors import UserError
from alexnet.experiments.ablations import ABLATIONS, AblationConfig
from alexnet.experiments.relu_vs_tanh import ReluTanhConfig
from alexnet.runtime import resolve_device
from alexnet.training.config import DEMO_RECIPE, TrainConfig


def subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """``{"train": ..., "experiment ablations": ...}``: every (sub)subcommand's parser."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[prefix + name] = sub
                out.update(subparsers(sub, prefix + name + " "))
    return out


PARSERS = subparsers(build_parser())


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


@pytest.mark.parametrize("command, cls, not_flags, also", [
    ("train", TrainConfig, {"model_options"}, DEMO_RECIPE),
    ("experiment relu-vs-tanh", ReluTanhConfig, {"target_error", "activations"}, {}),
    ("experiment ablations", AblationConfig, set(), {}),
])
def test_every_config_field_is_a_flag_with_its_description_and_default(command, cls, not_flags, also):
    parser = PARSERS[command]
    for f in dataclasses.fields(cls):
        action = option(parser, "--" + f.name.replace("_", "-"))
        if f.name in not_flags:
            assert action is None or action.dest != f.name, f.name
            continue
        assert action is not None and action.dest == f.name, f"{command}: no flag for {cls.__name__}.{f.name}"
        assert field_docs(cls).get(f.name), f"{cls.__name__}.{f.name} has no docstring"
        text = action.help.replace("%%", "%")
        assert text.startswith(field_help(cls, f.name).rstrip(".")), (f.name, text)
        # The flag holds no default of its own ("not given"): the dataclass's shows through, and --help says it.
        assert action.default is None, f.name
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        if default is dataclasses.MISSING:  # required, or (--resume's) said so
            assert action.required or "Required, except with --resume" in text, f.name
        elif default is not None:
            assert f"Default: {show(default)}." in text or f"Default: {show(default)};" in text, (f.name, text)
        if f.name in also and also[f.name] != default:
            assert f"the demo: {show(also[f.name])}" in text.lower(), (f.name, text)


def test_no_flags_given_is_the_dataclass_default():
    from alexnet.cli.train import build_config

    parser = build_parser()
    assert build_config(parser.parse_args(["train"])) == TrainConfig.demo()
    assert build_config(parser.parse_args(["train", "--data", "d"])) == TrainConfig(data="d")
    assert build_config(parser.parse_args(["train", "--data", "d", "--no-ten-crop", "--lr", "0.02", "--workers", "3"])) \
        == TrainConfig(data="d", ten_crop=False, lr=0.02, workers=3)


def test_experiment_flags_build_their_configs(monkeypatch):
    import numpy as np

    seen = []

    def record(*args, **kwargs):
        seen.append(next(a for a in args if isinstance(a, (AblationConfig, ReluTanhConfig))))
        raise UserError("stop")

    monkeypatch.setattr("alexnet.experiments.ablations.run_ablations", record)
    monkeypatch.setattr("alexnet.experiments.relu_vs_tanh.run_relu_vs_tanh", record)
    monkeypatch.setattr("alexnet.experiments.images.read_labelled_images",
                        lambda *a, **kw: (np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 1]), ["a", "b"]))
    for argv, config in [
        (["ablations", "--epochs", "2"], AblationConfig(epochs=2)),
        (["ablations", "--epochs", "2", "--only", "no_lrn,one_tower", "--no-ten-crop", "--workers", "1"],
         AblationConfig(epochs=2, only=["no_lrn", "one_tower"], ten_crop=False, workers=1)),
        # the dataclass's sweep (the CLI's and the dataclass's had drifted apart); --target in percent
        (["relu-vs-tanh"], ReluTanhConfig()),
        (["relu-vs-tanh", "--target", "30", "--no-lrn", "--lrs", "0.1,0.2"],
         ReluTanhConfig(target_error=0.3, lrn=False, lrs=(0.1, 0.2))),
    ]:
        assert main(["experiment", *argv, "--data", "d"]) == 2
        assert seen.pop() == config, argv
    assert ReluTanhConfig().lrs == (0.001, 0.003, 0.01, 0.03)
    assert "Default: 0.001,0.003,0.01,0.03." in option(PARSERS["experiment relu-vs-tanh"], "--lrs").help
    assert "Default: 25." in option(PARSERS["experiment relu-vs-tanh"], "--target").help


def test_ablation_names_in_the_only_help_are_the_registry():
    text = option(PARSERS["experiment ablations"], "--only").help
    assert all(name in text for name in ABLATIONS)


def test_same_vocabulary_in_every_subcommand():
    with_device = {name for name, p in PARSERS.items() if option(p, "--device")}
    assert {"train", "evaluate", "predict", "features", "neighbors", "report", "experiment relu-vs-tanh",
            "experiment ablations"} <= with_device
    for name in with_device:
        action = option(PARSERS[name], "--device")
        assert action.default in ("auto", None), name  # None: a generated flag, the dataclass's "auto"
        assert action.help.replace("%%", "%") == DEVICE_HELP, (name, action.help)
    for name, p in PARSERS.items():
        if (action := option(p, "--threads")) is not None:
            assert action.help.startswith("CPU threads for torch's operators"), name
        if (action := option(p, "--workers")) is not None:
            assert "torch's operators" not in action.help and ("thread" in action.help.lower() or
                                                               "process" in action.help.lower()), name
    for name in ("train", "evaluate", "predict", "features", "neighbors", "report", "experiment relu-vs-tanh",
                 "experiment ablations"):
        assert option(PARSERS[name], "--threads"), name
    for name in ("train", "prepare", "evaluate", "features", "neighbors", "experiment ablations"):
        assert option(PARSERS[name], "--workers"), name


def test_device_auto_and_absent_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    with pytest.raises(UserError, match="--device cuda:1: CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(UserError, match=r"--device gpu: not a device \(auto, cpu, cuda, cuda:N, mps\)"):
        resolve_device("gpu")


def test_threads_sets_torch_operator_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # restored afterwards
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        import os

        assert os.environ["OMP_NUM_THREADS"] == "1"  # the trainer keeps it
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UserError, match="--threads must be at least 1"):
        set_threads(0)


@pytest.mark.parametrize("argv", [["train", "--threads", "0"],
                                  ["evaluate", "--weights", "w", "--data", "d", "--threads", "0"],
                                  ["predict", "x.jpg", "--threads", "99999999"]])  # torch would crash on it
def test_bad_threads_is_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --threads: must be in 1..4096, got" in err[0], err


def test_evaluate_workers_are_decoding_threads_and_threads_torchs(monkeypatch):
    """``alexnet evaluate --workers 3 --threads 1``: 3 decoding threads, 1 operator thread (``--threads``
    used to be the decoding threads here)."""
    import importlib
    import types

    from alexnet.cli import evaluate as cli_evaluate

    seen = {}

    def fake_evaluate(model, dataset, **kw):
        seen.update(kw, torch_threads=torch.get_num_threads())
        raise UserError("stop")

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("alexnet.evaluation.data.open_prepared", lambda path: types.SimpleNamespace(meta={}))
    monkeypatch.setattr(cli_evaluate, "load_from_args", lambda args, device: types.SimpleNamespace(
        meta=types.SimpleNamespace(preprocess=types.SimpleNamespace(warp=False))))
    monkeypatch.setattr(importlib.import_module("alexnet.evaluation.evaluate"), "evaluate", fake_evaluate)
    before = torch.get_num_threads()
    try:
        assert main(["evaluate", "--weights", "w", "--data", "d", "--workers", "3", "--threads", "1"]) == 2
    finally:
        torch.set_num_threads(before)
    assert seen["workers"] == 3 and seen["torch_threads"] == 1


@pytest.mark.parametrize("argv, message", [
    (["features", "--weights", "w", "--data", "d", "--out", "f.npy", "--batch-size", "-1"],
     "argument --batch-size: must be at least 1, got -1"),  # wrote an empty feature file before
    (["neighbors", "--weights", "w", "--data", "d", "--query", "q.jpg", "--out", "n.png", "--batch-size", "0"],
     "argument --batch-size: must be at least 1, got 0"),
    (["evaluate", "--weights", "w", "--data", "d", "--workers", "0"], "argument --workers: must be at least 1"),
    (["evaluate", "--weights", "w", "--data", "d", "--per-class", ""], "argument --per-class: must not be empty"),
    (["kernels", "--weights", "w", "--out", "k.txt"], "argument --out: must end in .png or .jpg or .jpeg or .pdf"),
    (["kernels", "--weights", "w", "--out", ""], "argument --out: must not be empty"),
    (["predict", "x.jpg", "--plot", "p.txt"], "argument --plot: must end in .png"),
    (["predict", "x.jpg", "--plot", ""], "argument --plot: must not be empty"),  # was ignored before
    (["predict", "x.jpg", "--topk", "0"], "argument --topk: must be at least 1, got 0"),
    (["export", "--weights", "w", "--out", "m.txt"], "argument --out: must end in .onnx, got 'm.txt'"),
])
def test_bad_counts_and_output_names_are_refused_before_any_work(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_an_output_path_that_is_a_folder_is_one_line(tmp_path):
    """Refused before writing, naming the path given (the rename into place used to fail naming the
    temporary file)."""
    from alexnet.errors import UserError
    from alexnet.files import write_atomic

    (tmp_path / "plot.png").mkdir()
    with pytest.raises(UserError, match=r"plot.png is a folder: give a file name to write$"):
        write_atomic(tmp_path / "plot.png", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_an_unforeseen_error_is_still_one_line_and_debug_shows_it(monkeypatch, capsys):
    from alexnet.cli import info

    def broken(args):
        raise ValueError("something nobody checked\nsecond line")

    monkeypatch.setattr(info, "run", broken)
    assert main(["info"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["alexnet info: error: ValueError: something nobody checked (unexpected: ALEXNET_DEBUG=1 shows "
                   "where; please report it)"], err
    monkeypatch.setenv("ALEXNET_DEBUG", "1")
    with pytest.raises(ValueError, match="something nobody checked"):
        main(["info"])


def test_ctrl_c_while_the_command_starts_is_one_line(monkeypatch, capsys):
    # The console script imports alexnet.cli.main and calls main(); torch is imported inside main (building
    # the parser imports the commands), where a KeyboardInterrupt is caught: never a traceback.
    import subprocess
    import sys

    code = "import sys, alexnet, alexnet.cli.main; print('torch' in sys.modules, 'numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]
    import alexnet.cli.main as cli_main

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    assert cli_main.main(["models"]) == 130
    assert capsys.readouterr().err == "alexnet: interrupted\n"


def test_the_package_imports_its_names_on_first_use():
    import alexnet

    assert alexnet.create_model("cifar_4layer").num_classes == 10
    assert callable(alexnet.load) and callable(alexnet.predict) and alexnet.UserError is UserError
    assert alexnet.inspect.extract_features.__module__.startswith("alexnet.inspect")  # subpackages too
    assert set(alexnet.__all__) <= set(dir(alexnet)) and "training" in dir(alexnet)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        alexnet.nope  # noqa: B018
