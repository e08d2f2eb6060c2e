"""LRN benchmark: the paper net's training step with the channel-window-sum LRN against torch's pooling form.

    python benchmarks/lrn.py [--device auto] [--batch 32] [--steps 5] [--repeats 3] [--compile] [--json PATH]

``window-sum`` is ``alexnet.models.layers.local_response_norm`` (what the models use); ``torch`` is
``F.local_response_norm`` (``avg_pool3d`` over an added dimension), what they used before. Both compute
the same values (tests/test_models.py). Measured, alternating the two, on synthetic data so that only
the model and the optimizer run: the LRN layers alone (conv1's and conv2's output shapes, forward and
backward) and a whole training step of ``alexnet`` (the paper's SGD), images/s; median of ``--repeats``.
On CUDA the step runs in bf16 autocast and channels_last, as the trainer resolves it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine_info, sync, write_json  # noqa: E402

from alexnet.models import LocalResponseNorm, create_model  # noqa: E402
from alexnet.runtime import resolve_device  # noqa: E402
from alexnet.training.optim import PaperSGD  # noqa: E402

IMPLEMENTATIONS = ("torch", "window-sum")


def _torch_forward(self, x):  # the layer as it was: torch's pooling form
    alpha = self.alpha if self.alpha_over_n else self.alpha * self.size
    if x.dtype == torch.bfloat16 and x.device.type == "cpu":  # no bf16 CPU avg_pool3d
        return F.local_response_norm(x.float(), self.size, alpha=alpha, beta=self.beta, k=self.k).to(x.dtype)
    return F.local_response_norm(x, self.size, alpha=alpha, beta=self.beta, k=self.k)


_WINDOW_FORWARD = LocalResponseNorm.forward


def use(impl: str) -> None:
    LocalResponseNorm.forward = _torch_forward if impl == "torch" else _WINDOW_FORWARD
    torch._dynamo.reset()


def time_layer(device, shape, steps: int) -> float:
    """ms per forward + backward of one LRN layer (the paper's constants) on a tensor of ``shape``."""
    lrn = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)
    x = torch.randn(shape, device=device).mul_(20).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    for _ in range(2):
        lrn(x).sum().backward()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        lrn(x).sum().backward()
    sync(device)
    return (time.perf_counter() - t) / steps * 1000


def time_step(device, batch: int, steps: int, compile_: bool) -> float:
    """images/s of the paper net's training step on one fixed random batch."""
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    model = create_model("alexnet", num_classes=1000).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = PaperSGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    run = torch.compile(model) if compile_ else model
    x = torch.randn(batch, 3, 224, 224, device=device)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(run(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3 if compile_ else 2):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=None, help="batch (default: 32 on a CPU, 256 on CUDA)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per implementation (alternating)")
    ap.add_argument("--compile", action="store_true", help="also the torch.compile'd step")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    batch = args.batch or (256 if device.type == "cuda" else 32)
    rows = []
    cases = [("layer conv1 (96x55x55)", lambda: time_layer(device, (batch, 96, 55, 55), args.steps), "ms"),
             ("layer conv2 (256x27x27)", lambda: time_layer(device, (batch, 256, 27, 27), args.steps), "ms"),
             ("alexnet step, eager", lambda: time_step(device, batch, args.steps, False), "img/s")]
    if args.compile:
        cases.append(("alexnet step, compiled", lambda: time_step(device, batch, args.steps, True), "img/s"))
    for name, fn, unit in cases:
        got = {impl: [] for impl in IMPLEMENTATIONS}
        for _ in range(args.repeats):
            for impl in IMPLEMENTATIONS:
                use(impl)
                got[impl].append(fn())
        use("window-sum")
        med = {impl: statistics.median(v) for impl, v in got.items()}
        better = med["torch"] / med["window-sum"] if unit == "ms" else med["window-sum"] / med["torch"]
        rows.append({"case": name, "unit": unit, **{impl: round(m, 2) for impl, m in med.items()},
                     "runs": got, "speedup": round(better, 2)})
        print(f"{name:<26} torch {med['torch']:>9.1f} {unit:<5}  window-sum {med['window-sum']:>9.1f} {unit:<5}"
              f"  x{better:.2f}", flush=True)
    info = machine_info(device)
    print(f"{info['cpu']}, {info['cpus']} CPUs, {info.get('gpu', 'no GPU')}, torch {info['torch']}, batch {batch}, "
          f"{args.steps} steps, median of {args.repeats}; {info['date']}")
    if args.json:
        write_json(Path(args.json), {"machine": info, "batch": batch, "steps": args.steps,
                                     "repeats": args.repeats, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
