"""The CUDA-only code paths, checked against the CPU ones on a GPU (skipped without CUDA).

Every line here also has a CPU test elsewhere that runs the same arithmetic on CPU tensors; these tests
cover what only a GPU runs: pinned staging buffers, the copy stream and its events, the per-epoch plan
on the GPU, nvJPEG decoding, the compiled batched augmentation (Triton), the window-sum LRN and the
grouped convolutions in cuDNN, the fused optimizer, training with CUDA graphs (compiled ones, and the
whole step captured), and the profiler's
kernels as benchmarks/breakdown.py reads them. They need no data beyond what they make,
so they run on the GPU machine from a checkout alone (about a minute):

    PYTHONPATH=src python3 -m pytest -q tests/test_cuda.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet.data import ArrayDataset, Loader, PreparedDataset, prepare_dataset
from alexnet.data.demo import make_demo_images

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

VIEWS = ({"train": True, "std": [50.0, 60.0, 70.0], "lighting": 0.5}, {"train": True, "channels_last": True},
         {"train": False}, {"train": False, "ten_crop": True})


@pytest.fixture(scope="module")
def pixels() -> ArrayDataset:
    images, labels, classes = make_demo_images(45, 40, seed=5, num_classes=3)
    return ArrayDataset(images, labels, classes=classes)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, pixels):
    """The same images written as PNGs in class folders, prepared as raw shards and as JPEG shards."""
    from PIL import Image

    root = tmp_path_factory.mktemp("cuda-data")
    for i in range(len(pixels)):
        folder = root / "src" / f"class{int(pixels.labels[i])}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.get_uint8(i)).save(folder / f"{i:03d}.png")
    out = {}
    for fmt in ("raw", "jpeg"):
        ds = prepare_dataset(root / "src", root / fmt, size=40, format=fmt, shard_size=16, workers=2, progress=False)
        out[fmt] = PreparedDataset(ds.path)
    return out


def _epochs(loader, epochs=(0, 1)):
    got = []
    for e in epochs:
        loader.set_epoch(e)
        got += [(x.float().cpu(), y.cpu()) for x, y in loader]
    return got


def _same(cuda_batches, cpu_batches, atol):
    assert len(cuda_batches) == len(cpu_batches) > 0
    for (xg, yg), (xc, yc) in zip(cuda_batches, cpu_batches, strict=True):
        assert xg.shape == xc.shape
        torch.testing.assert_close(xg, xc, atol=atol, rtol=1e-5)
        assert torch.equal(yg, yc)


@pytest.mark.parametrize("augment", ["batched", "workers"])
@pytest.mark.parametrize("compile_", [False, True])
def test_loader_on_cuda_gives_the_cpu_batches(pixels, prepared, augment, compile_):
    """Raw pixels (in memory and from raw shards, gathered per shard into pinned buffers) and JPEGs
    decoded on the CPU: batch for batch what the CPU loader gives, with either CUDA path, eager or compiled."""
    if compile_ and augment == "workers":
        pytest.skip("compile applies to the batched step only")
    # compiled: what the trainer compiles (training batches), in both layouts (HWC pixels, CHW decoded JPEGs)
    datasets = (pixels, prepared["jpeg"]) if compile_ else (pixels, prepared["raw"], prepared["jpeg"])
    for ds in datasets:
        for kw in [v for v in VIEWS if v["train"]] if compile_ else VIEWS:
            cpu = _epochs(Loader(ds, 8, crop_size=32, workers=2, **kw))
            loader = Loader(ds, 8, crop_size=32, workers=3, device="cuda", augment=augment, compile=compile_,
                            gpu_decode=False, **kw)
            gpu = _epochs(loader)
            _same(gpu, cpu, atol=2e-4)
            x, y = next(iter(loader))
            assert x.is_cuda and y.is_cuda and x.dtype == torch.float32
            assert x.is_contiguous(memory_format=torch.channels_last) == bool(kw.get("channels_last"))


@pytest.mark.parametrize("augment", ["batched", "workers"])
def test_jpeg_decoded_on_the_gpu_is_close_to_the_cpu_decoder(prepared, augment):
    """nvJPEG's IDCT is not libjpeg-turbo's: the same images within a few levels, the same labels."""
    ds = prepared["jpeg"]
    for kw in VIEWS:
        cpu = _epochs(Loader(ds, 8, crop_size=32, workers=2, **kw), epochs=(0,))
        gpu = _epochs(Loader(ds, 8, crop_size=32, workers=2, device="cuda", augment=augment, gpu_decode=True,
                             **kw), epochs=(0,))
        assert len(gpu) == len(cpu)
        for (xg, yg), (xc, yc) in zip(gpu, cpu, strict=True):
            assert torch.equal(yg, yc)
            levels = (xg - xc).abs() * (50 if kw.get("std") else 1)  # about 0..255 levels (std 50-70)
            # decoders differ in IDCT and chroma upsampling (visible at sharp colour edges), not more
            far = float((levels > 16).float().mean())
            assert float(levels.mean()) < 2.0 and far < 0.01, (float(levels.mean()), far)


def test_loader_resumes_mid_epoch_and_stops_early_on_cuda(pixels):
    loader = Loader(pixels, 8, crop_size=32, workers=3, device="cuda", lighting=0.3, train=True)
    loader.set_epoch(3)
    full = [(x.cpu(), y.cpu()) for x, y in loader]
    loader.set_epoch(3)
    for k, _batch in enumerate(loader):  # stop early, with batches in flight
        if k == 1:
            break
    loader.set_epoch(3)
    resumed = [(x.cpu(), y.cpu()) for x, y in loader.iter_from(2)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(resumed, full[2:], strict=True))
    loader.close()


def test_window_sum_lrn_on_cuda_equals_torchs():
    from alexnet.models.layers import local_response_norm

    torch.manual_seed(0)
    for c in (96, 7):
        x = torch.randn(4, c, 13, 13, device="cuda", requires_grad=True)
        ours = local_response_norm(x, 5, 2e-5, 0.75, 2.0)
        ref = F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=2.0)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
        g1, = torch.autograd.grad(ours.square().sum(), x)
        g2, = torch.autograd.grad(ref.square().sum(), x)
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)
        compiled = torch.compile(lambda t: local_response_norm(t, 5, 2e-5, 0.75, 2.0))
        torch.testing.assert_close(compiled(x), ref, rtol=1e-5, atol=1e-6)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = local_response_norm(x.bfloat16(), 5, 2e-5, 0.75, 2.0)
            low_compiled = compiled(x.bfloat16())   # what a compiled bf16 training step runs
        torch.testing.assert_close(low.float(), ref, rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(low_compiled.float(), ref, rtol=2e-2, atol=2e-2)
        assert low_compiled.dtype == torch.bfloat16


def test_grouped_convolutions_on_cuda_compute_the_same_however_they_run(monkeypatch):
    from alexnet.models import create_model
    from test_models import grouped_conv_outputs

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=10).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    out, grads = grouped_conv_outputs(model, x)
    for impl in ("nchw", "split"):
        torch.testing.assert_close(out[impl], out["cudnn"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(grads[impl], grads["cudnn"], rtol=1e-3, atol=2e-3 * float(grads["cudnn"].abs().max()))


def test_fused_paper_sgd_on_cuda_takes_the_eager_steps():
    from alexnet.training.optim import PaperSGD

    torch.manual_seed(0)
    shapes = [(96, 3, 11, 11), (96,), (4096, 9216)]
    ps = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in shapes]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    eager, fused = PaperSGD(ps, lr=0.01), PaperSGD(qs, lr=0.01, fused=True)
    for step in range(5):
        for opt in (eager, fused):
            for group in opt.param_groups:
                group["lr"] = 0.01 if step < 3 else 0.001
        for p, q in zip(ps, qs, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        eager.step()
        fused.step()
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["paper", "sgd"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graphed_step_replays_the_eager_steps(optimizer, precision, monkeypatch):
    """The step captured as a CUDA graph (alexnet.training.graph) takes the eager steps: 3 uncaptured
    steps, the capture, then replays, with a learning rate that changes at every step (a rate baked into
    the graph would show) and two param groups; the meter's sums and image count agree too."""
    from torch import nn

    from alexnet.training.graph import WARMUP_STEPS, GraphedStep
    from alexnet.training.metrics import Meter
    from alexnet.training.optim import build_optimizer

    # cuDNN may pick a weight-gradient algorithm with atomics: in bf16 one rounding flipped between the two
    # models would be a difference of the tolerance's size, not a capture error
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                             nn.Linear(256, 5)).cuda()

    def forward_loss(model):
        def run(x, y):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False):
                logits = model(x)
            return logits, F.cross_entropy(logits.float(), y)
        return run

    models = [net(), net()]
    opts = [build_optimizer(optimizer, m, lr=0.1, momentum=0.9, weight_decay=5e-4, bias_decay=False,
                            bias_lr_factor=2.0, fused=optimizer == "sgd") for m in models]
    meters = [Meter("cuda"), Meter("cuda")]
    graphed = GraphedStep(forward_loss(models[1]), opts[1], meters[1], device=torch.device("cuda"), step=0,
                          capture=True)
    g = torch.Generator().manual_seed(1)
    for step in range(WARMUP_STEPS + 5):
        x, y = torch.randn(8, 3, 12, 12, generator=g).cuda(), torch.randint(0, 5, (8,), generator=g).cuda()
        lrs = [0.1 / (step + 1), 0.2 / (step + 1)]
        for group, lr in zip(opts[0].param_groups, lrs, strict=True):
            group["lr"] = lr
        logits, loss = forward_loss(models[0])(x, y)
        opts[0].zero_grad(set_to_none=True)
        loss.backward()
        opts[0].step()
        meters[0].update(loss, logits, y, step=step)
        graphed(x, y, lrs)
    assert graphed.graph is not None and graphed.capture_seconds is not None
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
    assert meters[1].images == meters[0].images == 8 * (WARMUP_STEPS + 5)
    torch.testing.assert_close(meters[1].sums, meters[0].sums, rtol=1e-4, atol=1e-4)
    assert meters[1].bad_step() is None and int(graphed.step_index) == WARMUP_STEPS + 5


@pytest.mark.parametrize("mode", ["fused-opt", "reduce-overhead", "cuda-graph"])
def test_training_on_cuda_compiled(tmp_path, pixels, mode):
    """alexnet train on the GPU, compiled (the default mode with the fused optimizer, or CUDA graphs with
    the plain one; one compilation each, to keep the suite's checks short): the batched, compiled loader
    feeds it, the loss falls on a learnable set, and resolved.yaml says what ran."""
    import yaml

    from alexnet.training import TrainConfig, train

    cfg = TrainConfig(arch="cifar_4layer", crop_size=32, epochs=4, batch_size=15, val_split=0.2, lr=0.01,
                      warmup_epochs=0, device="cuda", compile=True, out=str(tmp_path / mode), log_interval=1,
                      compile_mode="reduce-overhead" if mode == "reduce-overhead" else "default",
                      fused_optimizer=mode == "fused-opt", cuda_graph=mode == "cuda-graph")
    r = train(cfg, dataset=pixels, progress=False)
    losses = [row["train_loss"] for row in r.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    ran = yaml.safe_load((r.run_dir / "resolved.yaml").read_text())
    assert ran["device"].startswith("cuda") and ran["augment"] == "batched" and ran["compile"] is True
    assert ran["compile_mode"] == ("reduce-overhead" if mode == "reduce-overhead" else "default")
    assert ran["precision"] == "bf16" and ran["cuda_graph"] == (mode == "cuda-graph")
    assert r.final["ten_crop_top1_err"] is not None


def test_breakdown_reads_the_gpu_kernels(pixels):
    """benchmarks/breakdown.py on the GPU: the kernels of a few compiled steps are found, sorted into kinds
    (convolutions and matmuls among them), and the GPU's busy time lies within the wall time."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import breakdown
    import train as train_bench

    trainer = train_bench.make_trainer(pixels, "cifar_4layer", batch=15, device="cuda", workers=2, compile_=True)
    source = train_bench.synthetic_batches(trainer)
    try:
        for _ in range(3):
            trainer.train_step(*next(source))
        p = breakdown.profile_steps(trainer, source, steps=3)
    finally:
        trainer.train_loader.close()
    cats = p["categories"]
    assert cats.get("convolution", 0) > 0 and cats.get("matmul", 0) > 0 and cats.get("optimizer", 0) > 0, p
    assert 0 < p["busy_ms"] <= p["wall_ms"] * 1.05 and 0 < p["busy_share"] <= 1.05, p
    assert sum(cats.values()) >= p["busy_ms"] * 0.5, p  # kernels may overlap, not vanish
