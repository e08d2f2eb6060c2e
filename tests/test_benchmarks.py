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
                     "--json", str(out), "--profile-steps", "1")
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
    # both runs say where their time went: the phases make up the trainer's time, most of the wall time
    for run in (e2e, e2e["first_run"]):
        t = run["time"]
        assert t["training_s"] > 0 and t["final_evaluation_s"] > 0 and 0 < t["outside_trainer_s"] < run["wall_s"], t
        phases = sum(v for k, v in t.items() if k not in ("total_s", "outside_trainer_s"))
        assert phases == pytest.approx(t["total_s"], abs=0.01) and t["total_s"] > run["wall_s"] / 3, t
    table = proc.stdout[proc.stdout.index("GPU suite:"):]
    for name in expected:
        assert f"\n{name} " in table
    # each model row is profiled after its timed steps: a second table says where its step's time goes
    model_rows = [n for n in expected if n.count("/") == 2]
    for name in model_rows:
        cats = result["rows"][name]["profile"]["categories"]
        assert cats["convolution"] > 0 and cats["matmul"] > 0, (name, cats)
    breakdown = table[table.index("Where a step's time goes"):]
    assert all(f"\n{name} " in breakdown for name in model_rows) and "convolution" in breakdown


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


def _breakdown():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import breakdown

    return breakdown


@pytest.mark.parametrize("name, kind", [
    # kernel names as an H200 profile shows them (2026-11-29), and cuBLAS / cuDNN / inductor name patterns
    ("void cutlass__5x_cudnn::Kernel<cutlass_tensorop_bf16_s16816fprop_optimized>", "convolution"),
    ("_ZN17cutlass__5x_cudnn6KernelINS_4conv6kernel23ImplicitGemmConvolution", "convolution"),
    ("sm90_xmma_wgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", "convolution"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matmul"),
    ("nvjet_hsh_128x256_64x4_2x1_v_bz_coopA_NTN", "matmul"),
    ("triton_poi_fused__to_copy_add_avg_pool3d_backward_div_mul_pow_0", "lrn"),
    ("triton_poi_fused_add_constant_pad_nd_div_mul_pow_relu_3", "lrn"),
    ("triton_poi_fused__to_copy_add_div_max_pool2d_with_indices_backward_7", "pooling"),
    ("triton_poi_fused_native_dropout_relu_12", "dropout"),
    ("void nhwcSliceCKernel<__nv_bfloat16, __nv_bfloat16, float>", "layout"),
    ("Memcpy HtoD (Pinned -> Device)", "copy"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>", "elementwise"),
    ("triton_per_fused__log_softmax_nll_loss_forward_2", "elementwise"),
    ("aten::mkldnn_convolution", "convolution"),
    ("aten::addmm", "matmul"),
    ("ncclDevKernel_AllReduce_Sum_f32_RING_LL", "other"),
])
def test_breakdown_kinds(name, kind):
    assert _breakdown().kind_of(name) == kind


def test_breakdown_of_cuda_events():
    """summarize() on events shaped like torch.profiler's on CUDA: kernels on the device's timeline, each
    linked to the host op that launched it; the GPU's busy time is the union of their intervals;
    annotation ranges drawn on the GPU's timeline are not work; what optimizer.step() launched, or what
    runs inside its span on the GPU, is the optimizer's."""
    from types import SimpleNamespace as NS

    from torch.autograd import DeviceType

    bd = _breakdown()
    step = NS(name="Optimizer.step#PaperSGD.step", cpu_parent=None, device_type=DeviceType.CPU, id=1,
              linked_correlation_id=0)
    foreach = NS(name="aten::_foreach_add_", cpu_parent=step, device_type=DeviceType.CPU, id=7, linked_correlation_id=0)
    conv = NS(name="aten::cudnn_convolution", cpu_parent=None, device_type=DeviceType.CPU, id=5, linked_correlation_id=0)

    def device(name, start, end, link=0, annotation=False):
        return NS(name=name, device_type=DeviceType.CUDA, time_range=NS(start=start, end=end),
                  linked_correlation_id=link, is_user_annotation=annotation,
                  activity_type="gpu_user_annotation" if annotation else "kernel")

    events = [step, foreach, conv,
              device("sm90_xmma_fprop_implicit_gemm", 0, 600, link=5),
              device("nvjet_hsh_128x256", 500, 700),
              device("void at::native::multi_tensor_apply_kernel<...>", 1000, 1050, link=7),
              device("triton_poi_fused_add_mul_sub_0", 1050, 1100),  # a compiled update: no aten op to link to
              device("Optimizer.step#PaperSGD.step", 1000, 1100, annotation=True),  # a span, not work
              device("aten::cudnn_convolution", 0, 2000, annotation=True)]
    p = bd.summarize(events, steps=2, wall_s=0.002, cuda=True)
    # busy: 0-700 and 1000-1100, not the annotations' 0-2000
    assert p["categories"] == {"optimizer": 0.05, "matmul": 0.1, "convolution": 0.3}, p["categories"]
    assert p["wall_ms"] == 1.0 and p["busy_ms"] == 0.4 and p["busy_share"] == 0.4
    assert [t["name"] for t in p["top"]][0] == "sm90_xmma_fprop_implicit_gemm" and p["top"][0]["calls"] == 0.5
    assert "Optimizer.step#PaperSGD.step" not in [t["name"] for t in p["top"]]
    assert bd.describe(p) == "1.0 ms/step wall, GPU busy 0.4 ms (40%): convolution 0.3, matmul 0.1, optimizer 0.1"


def test_breakdown_on_cpu_profiles_the_trainer(tmp_path):
    """The script end to end on a CPU: the paper's net, a few steps, the ops' CPU time by kind."""
    out = tmp_path / "bd.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "breakdown.py"), "--device", "cpu",
                           "--batch", "4", "--steps", "1", "--warmup", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p = json.loads(out.read_text())
    cats = p["categories"]
    assert cats["convolution"] > 0 and cats["matmul"] > 0 and cats["optimizer"] > 0 and cats["lrn"] > 0, cats
    assert p["wall_ms"] > 0 and "busy_ms" not in p and p["top"] and p["machine"]["torch"]
    assert "ms/step wall: " in proc.stdout
