"""Optimizer benchmark: one SGD update of the paper net's 61 million weights, fused against multi-tensor.

    python benchmarks/optim.py [--device auto] [--arch alexnet] [--steps 20] [--repeats 3] [--json PATH]

``foreach`` is ``PaperSGD`` as the trainer runs it by default (four multi-tensor passes: ``v *= m``,
``v -= wd lr w``, ``v -= lr g``, ``w += v``); ``fused`` is ``PaperSGD(fused=True)``
(``--fused-optimizer``: one compiled pass per tensor that reads v, w, g and writes v, w once); and, as
torch's own reference, ``torch.optim.SGD`` with ``foreach`` and with ``fused=True`` (the same update while
the learning rate is constant). Milliseconds per step on random gradients, the learning rate changed
every step as the schedule does; median of ``--repeats`` runs, alternating the variants.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine_info, sync, write_json  # noqa: E402

from alexnet.models import create_model  # noqa: E402
from alexnet.runtime import resolve_device  # noqa: E402
from alexnet.training.optim import build_optimizer  # noqa: E402

VARIANTS = {"paper foreach": ("paper", False), "paper fused": ("paper", True),
            "torch SGD foreach": ("sgd", False), "torch SGD fused": ("sgd", True)}


def time_variant(model: torch.nn.Module, name: str, fused: bool, steps: int) -> float:
    """ms per optimizer step (gradients already in place)."""
    opt = build_optimizer(name, model, lr=0.01, momentum=0.9, weight_decay=5e-4, fused=fused)
    device = next(model.parameters()).device

    def step(k: int) -> None:
        for group in opt.param_groups:
            group["lr"] = 0.01 / (1 + k)  # a new rate every step: the fused form must not recompile
        opt.step()

    for k in range(3):  # compiles (fused paper) and allocates the state
        step(k)
    sync(device)
    t = time.perf_counter()
    for k in range(steps):
        step(k)
    sync(device)
    return (time.perf_counter() - t) / steps * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", default="alexnet")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per variant (alternating)")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = create_model(args.arch, num_classes=1000).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p).mul_(1e-3)
    params = sum(p.numel() for p in model.parameters())
    got: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant, (name, fused) in VARIANTS.items():
            got[variant].append(time_variant(model, name, fused, args.steps))
    med = {v: statistics.median(t) for v, t in got.items()}
    base = med["paper foreach"]
    rows = [{"variant": v, "ms": round(m, 3), "runs": got[v], "speedup_vs_paper_foreach": round(base / m, 2)}
            for v, m in med.items()]
    for r in rows:
        print(f"{r['variant']:<18} {r['ms']:>9.2f} ms/step  x{r['speedup_vs_paper_foreach']:.2f}", flush=True)
    info = machine_info(device)
    print(f"{args.arch}: {params:,} weights; {info['cpu']}, {info['cpus']} CPUs, {info.get('gpu', 'no GPU')}, "
          f"torch {info['torch']}, {args.steps} steps, median of {args.repeats}; {info['date']}")
    if args.json:
        write_json(Path(args.json), {"machine": info, "arch": args.arch, "weights": params, "steps": args.steps,
                                     "repeats": args.repeats, "command": " ".join(sys.argv), "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
