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
    (("info", "--input-size", "20"), "does not fit"),
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
    assert code != 0 and len(err) == 1 and "Not a directory" in err[0] and str(blocker) in err[0], err


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
