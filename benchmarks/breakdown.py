"""Where a training step's time goes: torch.profiler over a few of the trainer's steps, summed by kind.

    python benchmarks/breakdown.py [--arch alexnet] [--data synthetic|raw|jpeg] [--compile | --no-compile]
                                   [--compile-mode M] [--fused-optimizer] [--grouped-conv G] [--batch N] [--steps 5] [--warmup 5] [--device auto] [--top 12]
                                   [--json PATH] [--trace PATH.json] [--images N] [--data-dir DIR]

The step is :meth:`alexnet.training.Trainer.train_step` as ``alexnet train`` builds it (bf16 autocast,
channels_last and ``torch.compile`` on CUDA), fed by one fixed batch on the device (``synthetic``) or by
the trainer's :class:`~alexnet.data.Loader` over Imagenette prepared as ``raw`` or ``jpeg`` (the GPU
suite's data, see ``benchmarks/gpu.py``). ``--warmup`` steps run first (compilation, cuDNN's
autotuning), then ``--steps`` steps run under the profiler, ending with a device synchronisation.

What it reports, per step:

- ``wall_ms``: the host's time per step, profiler on (it slows the host a little);
- on CUDA, ``busy_ms`` and ``busy_share``: the time at least one kernel or copy ran on the GPU (the union
  of their intervals) and its share of the wall time. A GPU busy well under 100% waits on the host: on
  kernel launches (CUDA graphs help), on the loader, or on a synchronisation;
- ``categories``: the device time of each kind of work (on a CPU: the ops' own CPU time, all threads),
  in ms per step. Kinds, first match wins: ``optimizer`` (anything launched inside ``optimizer.step()``,
  or running inside its span on the GPU),
  then by name: ``copy`` (memcpy/memset), ``layout`` (cuDNN's channel slicing and transposes around
  grouped convolutions), ``lrn`` (kernels holding the LRN's ``pow`` or ``avg_pool3d``; inductor fuses
  pooling and ReLU into them), ``pooling``, ``dropout``, ``matmul`` (cuBLAS: the fc layers),
  ``convolution`` (cuDNN), ``elementwise`` (other fused or pointwise kernels), ``other``;
- ``top``: the kernels (CPU: ops) with the most time, their ms per step and calls per step.

``--trace`` also writes the Chrome trace (open it in https://ui.perfetto.dev). ``benchmarks/gpu.py``
imports :func:`profile_steps` to add this breakdown to each of its model rows.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import endless, machine_info, sync, write_json  # noqa: E402

# (kind, pattern over the lower-cased kernel or op name); the first match wins
KINDS = (
    ("copy", r"^memcpy|^memset|aten::copy_|aten::_to_copy"),
    ("layout", r"nhwcslice|nchwtonhwc|nhwctonchw|transpose|aten::cat\b|aten::slice\b"),
    ("lrn", r"avg_pool3d|_pow_|_pow$|aten::pow\b|local_response"),
    ("pooling", r"max_pool|pooling"),
    ("dropout", r"dropout|bernoulli|philox|aten::rand"),
    ("matmul", r"^(?!.*implicit).*gemm|nvjet|cublas|aten::addmm|aten::mm\b|aten::linear"),
    ("convolution", r"conv|cudnn|implicit|xmma|cask|wgrad|dgrad|fprop|winograd"),
    ("elementwise", r"elementwise|triton_|cpp_fused|relu|threshold|aten::(add|mul|div|sub|where|fill|zero)"),
)
OTHER = "other"
OPTIMIZER = "optimizer"
ORDER = (OPTIMIZER, *(k for k, _ in KINDS), OTHER)
_COMPILED = [(kind, re.compile(pattern)) for kind, pattern in KINDS]


def kind_of(name: str, ancestors: tuple[str, ...] = ()) -> str:
    """The kind of a kernel (or, on a CPU, an op) named ``name``, launched under the ranges ``ancestors``
    (the names of the host events around its launch, innermost first)."""
    if any(a.startswith("Optimizer.step") for a in ancestors):
        return OPTIMIZER
    low = name.lower()
    for kind, pattern in _COMPILED:
        if pattern.search(low):
            return kind
    return OTHER


def _ancestors(event) -> tuple[str, ...]:
    names, parent = [], getattr(event, "cpu_parent", None)
    while parent is not None:
        names.append(parent.name)
        parent = getattr(parent, "cpu_parent", None)
    return tuple(names)


def _union_us(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _annotation(e) -> bool:
    """A range drawn on the GPU's timeline for a host annotation (``Optimizer.step#...``, a compiled
    region): from its first kernel to its last, gaps included, so not GPU work (torch's own device-time
    sums leave these out too)."""
    return bool(getattr(e, "is_user_annotation", False)) or getattr(e, "activity_type", None) == "gpu_user_annotation" \
        or e.name == "Context Sync"


def summarize(events, *, steps: int, wall_s: float, cuda: bool, top: int = 12) -> dict:
    """The breakdown (see the module docstring) from the profiler's ``events()`` of ``steps`` steps.

    On CUDA the items are the device's kernels, copies and memsets (annotation ranges left out), each
    attributed through its ``linked_correlation_id`` to the host event that launched it, whose enclosing
    ranges say whether ``optimizer.step()`` launched it."""
    from torch.autograd import DeviceType

    items: list[tuple[str, float, str]] = []  # (name, microseconds, kind)
    intervals: list[tuple[float, float]] = []
    if cuda:
        launchers = {e.id: e for e in events if e.device_type == DeviceType.CPU
                     and not getattr(e, "linked_correlation_id", 0)}
        # the optimizer's span on the GPU's timeline: what runs inside it is the optimizer's, whoever
        # launched it (a compiled update's kernels have no aten op to link to)
        spans = [(e.time_range.start, e.time_range.end) for e in events
                 if e.device_type == DeviceType.CUDA and _annotation(e) and e.name.startswith("Optimizer.step")]
        for e in events:
            if e.device_type != DeviceType.CUDA or _annotation(e):
                continue
            a, b = e.time_range.start, e.time_range.end
            intervals.append((a, b))
            launcher = launchers.get(getattr(e, "linked_correlation_id", 0))
            up = () if launcher is None else (launcher.name, *_ancestors(launcher))
            if any(lo <= a and b <= hi for lo, hi in spans):
                up = ("Optimizer.step (its span on the GPU)", *up)
            items.append((e.name, b - a, kind_of(e.name, up)))
    else:
        for e in events:
            if e.device_type == DeviceType.CPU and not getattr(e, "is_user_annotation", False):
                us = e.self_cpu_time_total
                if us > 0:
                    items.append((e.name, us, kind_of(e.name, _ancestors(e))))
    per_step = 1e-3 / steps  # microseconds in all -> milliseconds per step
    categories = dict.fromkeys(ORDER, 0.0)
    by_name: dict[str, list] = {}
    for name, us, kind in items:
        categories[kind] += us * per_step
        entry = by_name.setdefault(name, [0.0, 0, kind])
        entry[0] += us * per_step
        entry[1] += 1
    total = sum(categories.values())
    out = {"steps": steps, "wall_ms": round(1e3 * wall_s / steps, 3), "device": "cuda" if cuda else "cpu",
           "time_ms": round(total, 3),
           "categories": {k: round(v, 3) for k, v in categories.items() if v > 0},
           "top": [{"name": name, "ms": round(ms, 3), "calls": round(calls / steps, 2), "kind": kind}
                   for name, (ms, calls, kind) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]]}
    if cuda:
        busy = _union_us(intervals) * per_step
        out["busy_ms"] = round(busy, 3)
        out["busy_share"] = round(busy / out["wall_ms"], 4) if out["wall_ms"] else None
    return out


def profile_steps(trainer, source, *, steps: int, top: int = 12, trace: str | Path | None = None) -> dict:
    """Profile ``steps`` of ``trainer``'s training steps on ``source``'s batches (after the caller's warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(trainer.device)
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(*next(source))
        trainer.meter.values()  # the read the trainer makes at a log interval
        sync(trainer.device)
        wall = time.perf_counter() - t0
    if trace:
        prof.export_chrome_trace(str(trace))
    return summarize(prof.events(), steps=steps, wall_s=wall, cuda=cuda, top=top)


def describe(p: dict) -> str:
    """One line: wall, GPU busy, and the kinds largest first."""
    kinds = sorted(p["categories"].items(), key=lambda kv: -kv[1])
    head = f"{p['wall_ms']:.1f} ms/step wall"
    if p.get("busy_ms") is not None:
        head += f", GPU busy {p['busy_ms']:.1f} ms ({100 * p['busy_share']:.0f}%)"
    return head + ": " + ", ".join(f"{k} {v:.1f}" for k, v in kinds if v >= 0.05)


def main(argv=None) -> int:
    import gpu  # the suite's data (Imagenette subset, prepared once) and settings
    import train as train_bench

    from alexnet import runtime

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="alexnet")
    ap.add_argument("--data", default="synthetic", choices=("synthetic", "raw", "jpeg"))
    ap.add_argument("--compile", dest="compile_", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile the model (default: as alexnet train resolves it: on CUDA)")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode (reduce-overhead: CUDA graphs)")
    ap.add_argument("--fused-optimizer", action="store_true", help="the SGD update in one pass per tensor")
    ap.add_argument("--grouped-conv", default="cudnn", help="how grouped convolutions run: cudnn, nchw, split")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, help="batch (CUDA 256, CPU 16)")
    ap.add_argument("--steps", type=int, default=5, help="profiled steps (default 5)")
    ap.add_argument("--warmup", type=int, default=5, help="steps before profiling (default 5)")
    ap.add_argument("--top", type=int, default=12, help="kernels listed (default 12)")
    ap.add_argument("--images", type=int, help="Imagenette images for --data raw/jpeg (CUDA 4000, CPU 320)")
    ap.add_argument("--data-dir", metavar="DIR", help=f"folder holding {gpu.TAR} (default: as gpu.py)")
    ap.add_argument("--workers", type=int, help="loader workers (default: this process's CPUs)")
    ap.add_argument("--json", metavar="PATH", help="write the breakdown here")
    ap.add_argument("--trace", metavar="PATH", help="write the Chrome trace of the profiled steps here")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        raise SystemExit("breakdown.py: --steps and --warmup must be at least 1")

    device = runtime.resolve_device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch or (256 if cuda else 16)
    workers = args.workers or runtime.cpu_share()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="alexnet-breakdown-") as work:
        if args.data == "synthetic":  # the trainer is built on random images; its steps get one fixed batch
            import numpy as np

            from alexnet.data import ArrayDataset

            rng = np.random.default_rng(0)
            ds = ArrayDataset(rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8),
                              np.arange(batch) % 10, classes=[str(k) for k in range(10)])
        else:
            data = gpu.Data(gpu.find_tar(args.data_dir), Path(work), args.images or (4000 if cuda else 320), workers)
            ds = data.prepared(args.data)
        trainer = train_bench.make_trainer(ds, args.arch, batch=batch, device=str(device), workers=workers,
                                           compile_=args.compile_, compile_mode=args.compile_mode,
                                           fused_optimizer=args.fused_optimizer, grouped_conv=args.grouped_conv)
        source = train_bench.synthetic_batches(trainer) if args.data == "synthetic" else endless(trainer.train_loader)
        try:
            for _ in range(args.warmup):
                trainer.train_step(*next(source))
            result = profile_steps(trainer, source, steps=args.steps, top=args.top, trace=args.trace)
        finally:
            if args.data != "synthetic":
                source.close()
            trainer.train_loader.close()
    r = trainer.resolved
    result.update({"arch": args.arch, "data": args.data, "batch": batch, "compile": r.compile,
                   "compile_mode": r.compile_mode, "fused_optimizer": args.fused_optimizer,
                   "grouped_conv": r.grouped_conv,
                   "precision": r.precision, "channels_last": r.channels_last, "machine": machine_info(device)})
    print(f"{args.arch}, {args.data} data, batch {batch}, {'compiled' if r.compile else 'eager'}, {r.precision}, "
          f"{device}: {describe(result)}")
    print(f"{'kernel' if cuda else 'op'}{'':<73} {'ms/step':>8} {'calls':>6}  kind")
    for t in result["top"]:
        print(f"{t['name'][:78]:<79} {t['ms']:>8.2f} {t['calls']:>6.1f}  {t['kind']}")
    if args.json:
        write_json(Path(args.json), result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
