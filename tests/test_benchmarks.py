"""benchmarks/gpu.py, the one GPU suite, run on a CPU with tiny settings (its GPU rows need a GPU)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU_SUITE = ROOT / "benchmarks" / "gpu.py"


def run_suite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GPU_SUITE), *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_gpu_suite_on_cpu_has_every_row(shared_data, tmp_path):
    out = tmp_path / "gpu.json"
    proc = run_suite("--device", "cpu", "--quick", "--data", str(shared_data), "--cache", str(tmp_path / "cache"),
                     "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    expected = [f"{m}/eager/{d}" for m in ("alexnet", "alexnet_owt") for d in ("synthetic", "raw", "jpeg")]
    expected += ["loader/raw", "loader/jpeg-cpu", "baseline", "train/alexnet"]
    assert list(result["rows"]) == expected
    for name, row in result["rows"].items():
        assert row["images_per_s"] > 0, name
    assert result["complete"] and result["settings"]["batch"] == 8
    assert result["machine"]["torch"] and "gpu.py" in result["command"]
    assert result["rows"]["alexnet/eager/raw"]["vs_synthetic"] > 0
    assert result["rows"]["alexnet_owt/eager/jpeg"]["decode"].startswith("cpu")
    e2e = result["rows"]["train/alexnet"]
    assert e2e["epochs"] == 1 and 0 < e2e["train_share"] < 1 and e2e["wall_s"] >= e2e["train_steps_s"]
    # both runs say where their time went; the phases (and the process's start) make up the wall time
    for run in (e2e, e2e["first_run"]):
        t = run["time"]
        assert t["training_s"] > 0 and t["final_evaluation_s"] > 0 and t["process_start_s"] > 0, t
        assert t["total_s"] + t["process_start_s"] == pytest.approx(run["wall_s"], abs=0.05)
    table = proc.stdout[proc.stdout.index("GPU suite:"):]
    for name in expected:
        assert f"\n{name} " in table


def test_gpu_suite_pack_data_and_rows(shared_data, tmp_path):
    """--pack writes the subset that travels to the GPU machine; --data reads it; --rows picks rows."""
    proc = run_suite("--pack", str(tmp_path / "pack"), "--images", "20", "--data", str(shared_data))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "pack" / "imagenette-train.tar.gz").is_file()
    out = tmp_path / "gpu.json"
    proc = run_suite("--device", "cpu", "--quick", "--data", str(tmp_path / "pack"), "--rows", "loader/*",
                     "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert list(rows) == ["loader/raw", "loader/jpeg-cpu"]
    assert all(r["images_per_s"] > 0 and r["images"] == 20 for r in rows.values())
    proc = run_suite("--device", "cpu", "--data", str(tmp_path / "pack"), "--rows", "loader/jpeg-gpu")
    assert proc.returncode != 0 and "needs CUDA" in proc.stderr


def test_gpu_suite_rows_on_cuda():
    """The rows a GPU runs (no GPU needed to list them): the earlier loader path only beside the compiled
    step and the loader alone; GPU decoding only there."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    s = gpu.settings_for(gpu.parser().parse_args([]), gpu.torch.device("cuda"))
    names = gpu.row_names(s, cuda=True)
    assert [n for n in names if "workers" in n] == ["alexnet/compiled/raw-workers", "alexnet_owt/compiled/raw-workers",
                                                     "loader/raw-workers"]
    assert "loader/jpeg-gpu" in names and "alexnet/cudagraphs/synthetic" in names and names[0] == "checks"
    assert not any("workers" in n or "gpu" in n or n == "checks" for n in gpu.row_names(s, cuda=False))
    with pytest.raises(SystemExit, match="needs CUDA"):
        gpu.select(gpu.row_names(s, cuda=False), "loader/raw-workers", cuda=False)


def test_gpu_suite_checks_row_reports_the_cuda_tests(monkeypatch):
    """The checks row runs tests/test_cuda.py; here (no GPU) every test skips, which is a pass."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    if gpu.torch.cuda.is_available():
        pytest.skip("on a GPU the checks row runs the real tests (benchmarks/gpu.py)")
    row = gpu.checks_row()
    assert row["summary"].endswith("skipped") or " skipped in " in row["summary"], row
    assert gpu._note("checks", row).startswith("tests/test_cuda.py: ")
    monkeypatch.setattr(gpu, "CHECKS", ROOT / "tests" / "nowhere.py")  # pytest fails: the row says so
    with pytest.raises(RuntimeError, match="no tests ran|not found|ERROR"):
        gpu.checks_row()
