"""`alexnet models` and `alexnet info`: output and one-line errors, in a real subprocess."""

import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "alexnet", *args], capture_output=True, text=True, timeout=120)


def test_info_prints_paper_counts_and_shapes():
    r = run("info", "--arch", "alexnet")
    assert r.returncode == 0, r.stderr
    assert "60,965,224" in r.stdout
    for shape in ("96x55x55", "256x27x27", "384x13x13", "256x13x13", "256x6x6"):
        assert shape in r.stdout
    assert "724,406,816" in r.stdout  # total MACs per image


def test_info_takes_the_model_as_a_positional_name_too():
    r = run("info", "alexnet_owt")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("alexnet_owt: input 3x224x224") and "61,100,840" in r.stdout


def test_info_with_option_and_input_size():
    r = run("info", "--arch", "alexnet", "--opt", "towers=1", "--input-size", "227")
    assert r.returncode == 0, r.stderr
    assert "59,798,312" in r.stdout and "48x55x55" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (("info", "--arch", "nope"), "unknown model 'nope'"),
    (("info", "nope"), "unknown model 'nope'"),
    (("info", "alexnet", "--arch", "alexnet_owt"), "two models named"),
    (("info", "--opt", "towers=5"), "towers must be 1 or 2"),
    (("info", "--opt", "towers"), "NAME=VALUE"),
    (("info", "--input-size", "abc"), "expected a whole number, got 'abc'"),
    (("info", "--input-size", "0"), "--input-size: must be at least 1, got 0"),
    (("info", "--num-classes", "99999999999999"), "--num-classes: must be in 1..100000"),
    (("info", "--input-size", "20"), "alexnet takes 3x224x224 input"),
    (("nosuchcommand",), "invalid choice"),
])
def test_user_mistakes_are_one_line(args, needle):
    r = run(*args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0] and "Traceback" not in r.stderr


def test_models_lists_registry():
    r = run("models")
    assert r.returncode == 0, r.stderr
    for name, params in [("alexnet", "60,965,224"), ("alexnet_owt", "61,100,840"), ("cifar_4layer", "89,578")]:
        line = next(line for line in r.stdout.splitlines() if line.startswith(name + " "))
        assert params in line


def test_help_lists_subcommands():
    r = run("--help")
    assert r.returncode == 0 and "models" in r.stdout and "info" in r.stdout


def test_no_command_lists_the_commands_and_is_a_usage_error(capsys):
    from alexnet.cli.main import main

    assert main([]) == 2   # so a script's `alexnet $CMD` with an empty $CMD does not pass for done
    out, err = capsys.readouterr()
    assert out == "" and "train" in err and "evaluate" in err


def test_experiment_without_a_name_is_a_usage_error(capsys):
    from alexnet.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["experiment"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "name an experiment" in err[0], err


def test_an_unwritable_out_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    """A file where a folder belongs (root ignores permissions, so this is the portable unwritable case)."""
    from alexnet.cli.main import main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    blocker = tmp_path / "afile"
    blocker.write_text("")
    code = main(["train", "--out", str(blocker / "run"), "--arch", "cifar_4layer", "--demo-images", "40",
                 "--demo-size", "36", "--demo-classes", "4", "--epochs", "1", "--batch-size", "8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"{blocker} is a file, not a folder" in err[0], err
    for out, says in ((blocker, f"{blocker} is a file, not a folder"), ("/dev/null", "/dev/null is a file")):
        assert main(["train", "--out", str(out), "--epochs", "1"]) == 2
        assert says in capsys.readouterr().err
    for args, says in ((["--resume", str(blocker)], f"{blocker} is a file, not a run directory"),
                       (["--config", str(tmp_path)], f"{tmp_path} is a folder, not a config file")):
        assert main(["train", *args]) == 2
        assert says in capsys.readouterr().err


def test_files_asked_for_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A write that fails half-way (a full disk) leaves neither a partial file nor a temporary one."""
    import os

    from alexnet.files import write_atomic

    target = tmp_path / "report.html"
    target.write_text("the previous report")
    real_fsync = os.fsync

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "<html>" + "x" * 10_000)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_text() == "the previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    # the error names the file asked for, not the temporary one it was written under
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError) as e:
        write_atomic(target, "x")
    assert e.value.filename == str(target)


@pytest.mark.parametrize("command", [["evaluate", "--weights", "W", "--data", "D", "--per-class"],
                                     ["predict", "--weights", "W", "x.jpg", "--plot"],
                                     ["kernels", "--weights", "W", "--out"]])
def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path, capsys, command):
    """The walkthrough: evaluate ran 24 s, then lost its result to --per-class afile/x.csv."""
    from alexnet.cli.main import main

    blocker = tmp_path / "afile"
    blocker.write_text("")
    suffix = ".csv" if "--per-class" in command else ".png"
    assert main([*command, str(blocker / "deeper" / f"x{suffix}")]) == 2  # before W, D or x.jpg are looked at
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{blocker} is a file, not a folder" in err[0], err
    assert main([*command, str(tmp_path / "new" / f"x{suffix}")]) == 2   # a folder still to make is fine:
    assert "cannot write" not in capsys.readouterr().err                  # the error is about W then
    assert not (tmp_path / "new").exists()                                # and nothing was created


# --- `alexnet info` on weights -----------------------------------------------------------------------

CIFAR_CLASSES = [{"index": i, "wnid": w, "name": w} for i, w in enumerate(
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])]


@pytest.fixture
def trained_weights(tmp_path):
    """A run directory as `alexnet train` leaves it: weights with classes, preprocessing and its record."""
    import numpy as np
    import torch

    import alexnet
    from alexnet.weights import save_weights

    torch.manual_seed(0)
    run_dir = tmp_path / "cifar_run"
    run_dir.mkdir()
    save_weights(run_dir / "weights.safetensors", alexnet.create_model("cifar_4layer"), classes=CIFAR_CLASSES,
                 preprocess={"resize": 32, "crop_size": 32, "mean_rgb": [125.3, 122.6, 113.3], "std_rgb": None,
                             "mean": "image", "warp": False},
                 mean_image=np.full((32, 32, 3), 120.0, np.float32),
                 extra={"trained_by": "alexnet train", "epochs": 15, "steps": 525, "val_top1_err": 0.542,
                        "ten_crop_top1_err": 0.526})
    return run_dir


def info_lines(capsys, *args) -> dict[str, str]:
    from alexnet.cli.main import main

    assert main(["info", *map(str, args)]) == 0
    out = capsys.readouterr().out
    return {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in out.splitlines()}


def test_info_of_a_weights_file_reads_its_metadata_not_its_tensors(trained_weights, capsys, monkeypatch):
    import safetensors.torch

    import alexnet.weights.file

    def no(*a, **k):
        raise AssertionError("info read the model tensors")

    monkeypatch.setattr(safetensors.torch, "load_file", no)
    monkeypatch.setattr(alexnet.weights.file, "load_file", no)
    for source in (trained_weights, trained_weights / "weights.safetensors"):  # the run directory, or the file
        rows = info_lines(capsys, source)
        assert rows["weights"] == f"{trained_weights / 'weights.safetensors'} (alexnet weights file)"
        assert rows["model"] == "cifar_4layer"
        assert rows["classes"] == "10: airplane; automobile; bird; cat; deer; ..."
        assert rows["preprocess"] == ("shorter side 32, centre square, crop 32, mean image (32x32, per-channel "
                                      "[125.3, 122.6, 113.3]), no std")
        assert rows["training"] == "alexnet train, 15 epochs, 525 steps"
        assert rows["errors"] == "val top-1 54.20%, 10-crop top-1 52.60%"
        assert rows["parameters"] == "89,578"


def test_info_of_a_state_dict_and_a_checkpoint(tmp_path, capsys):
    import torch

    import alexnet

    model = alexnet.create_model("alexnet", num_classes=10, towers=1)
    torch.save(model.state_dict(), tmp_path / "sd.pth")
    rows = info_lines(capsys, tmp_path / "sd.pth")
    assert "state dict without alexnet metadata" in rows["weights"]
    assert rows["model"] == "alexnet (towers=1)" and rows["classes"].startswith("10: class_0; class_1")
    assert rows["parameters"] == "55,742,282" and "training" not in rows
    run_dir = tmp_path / "interrupted"
    run_dir.mkdir()
    small = alexnet.create_model("cifar_4layer")
    torch.save({"format": "alexnet-train-checkpoint", "version": 1, "model": small.state_dict(),
                "config": {"arch": "cifar_4layer"}, "classes": CIFAR_CLASSES,
                "position": {"epoch": 3, "batch": 0, "step": 105},
                "history": [{"epoch": 3, "train_top1_err": 0.7, "val_top1_err": 0.69, "val_top5_err": None}]},
               run_dir / "last.pt")
    rows = info_lines(capsys, run_dir)
    assert rows["weights"] == f"{run_dir / 'last.pt'} (training checkpoint)"
    assert rows["training"] == "alexnet train (checkpoint), 3 epochs, 105 steps"
    assert rows["errors"] == "val top-1 69.00%, train top-1 70.00%"
    assert rows["classes"].startswith("10: airplane")


def test_info_refuses_bad_weights_metadata_in_one_line(trained_weights, tmp_path, capsys):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from alexnet.cli.main import main

    source = trained_weights / "weights.safetensors"
    with safe_open(str(source), framework="pt") as f:
        meta = json.loads(f.metadata()["alexnet"])
    tensors = load_file(str(source))

    def variant(name, change=None, drop=None):
        m = json.loads(json.dumps(meta))
        if change:
            change(m)
        path = tmp_path / name
        save_file({k: v for k, v in tensors.items() if k != drop}, str(path), metadata={"alexnet": json.dumps(m)})
        return path

    cases = [
        (variant("arch.safetensors", lambda m: m.update(arch="resnet\x1b[31m")), "unknown model 'resnet\\x1b[31m'"),
        (variant("resize.safetensors", lambda m: m["preprocess"].update(resize=100000)), "resize must be"),
        (variant("mean.safetensors", lambda m: m["preprocess"].update(resize=64)), "the mean image must be 64x64x3"),
        (variant("fc.safetensors", drop="fc10.bias"), "do not fit cifar_4layer: they lack fc10.bias"),
        (variant("classes.safetensors", lambda m: m.update(num_classes=11)), "10 classes named for 11 outputs"),
        (variant("opt.safetensors", lambda m: m.update(model_options={"activation": "swish"})), "activation"),
    ]
    for path, needle in cases:
        assert main(["info", str(path)]) == 2, needle
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "\x1b" not in err[0], (needle, err)
    assert main(["info", str(source), "--num-classes", "3"]) == 2
    assert "weights record their own" in capsys.readouterr().err


def test_info_names_stay_models_and_missing_files_say_so(tmp_path):
    (tmp_path / "alexnet").mkdir()  # a folder named like a model: the model wins
    r = subprocess.run([sys.executable, "-m", "alexnet", "info", "alexnet"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("alexnet: input 3x224x224"), r.stderr
    r = run("info", str(tmp_path / "tv_alexnet.safetensors"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "unknown model" in r.stderr and "nor is there a weights file or run directory" in r.stderr
