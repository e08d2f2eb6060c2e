"""One GPU suite: the training and loading figures of this project on one GPU, in one table, in one run.

    python benchmarks/gpu.py [--json PATH] [--rows NAMES] [--quick] [--device auto] [--data DIR] [--cache DIR]
    python benchmarks/gpu.py --pack [DIR] [--images N]     # a subset of Imagenette small enough to travel

Rows (``--rows`` takes a comma-separated list of these names, or shell patterns such as ``alexnet/*``):

- ``checks`` (CUDA, first): ``tests/test_cuda.py``, the CUDA-only code paths against the CPU ones
  (pytest in a subprocess, at most ``CHECKS_TIMEOUT_S``): whether the figures below come from code
  that computes the right thing on this GPU;
- ``MODEL/MODE/DATA`` for MODEL in ``alexnet``, ``alexnet_owt``, MODE in ``eager``, ``compiled``
  (``torch.compile``) and DATA in ``synthetic`` (one fixed random batch on the device: the model and
  optimizer alone), ``raw`` (the trainer's ``Loader`` over Imagenette prepared with ``--format raw``) and
  ``jpeg`` (over ``--format jpeg``, decoded on the GPU on CUDA): images/s of
  :meth:`alexnet.training.Trainer.train_step` as ``alexnet train`` builds it (batch 256; bf16 autocast and
  channels_last on CUDA, as the trainer resolves them), and the share of that model's synthetic rate;
- ``MODEL/VARIANT/synthetic``: the opt-in speed switches of the trainer, on synthetic data, compared with
  the mode they modify (``% synth`` is the ratio to that mode's synthetic row): ``cudagraphs``
  (``--compile-mode reduce-overhead``: the compiled step replayed from CUDA graphs), ``fused-opt``
  (``--fused-optimizer``: the SGD update in one pass over each weight tensor), ``graph`` and
  ``graph-fused`` (``--cuda-graph``: the whole compiled step, update and meter included, captured as
  one CUDA graph and replayed; with the plain or the fused update), and for the two-tower
  ``alexnet`` the grouped convolutions run as ``split`` (one convolution per group) or ``nchw`` (NCHW
  inside the channels_last net) instead of cuDNN's grouped kernel (``--grouped-conv``; eager);
- ``MODEL/compiled/raw-workers`` (CUDA): the ``raw`` row with the loader's earlier CUDA path, each worker
  thread copying and augmenting its batch on a side stream (``Loader(augment="workers")``), against
  today's default, where the workers only gather bytes and the training thread copies and augments
  each batch in one compiled step (``augment="batched"``);
- ``loader/raw``, ``loader/raw-workers`` (CUDA), ``loader/jpeg-gpu``, ``loader/jpeg-cpu``: the ``Loader``
  alone (no training step), the same batches on the same device;
- ``baseline``: ``torchvision.models.alexnet`` trained by the pytorch/examples ImageNet loop, as in
  ``benchmarks/train.py`` (ImageFolder + RandomResizedCrop + DataLoader, torch SGD, a sync per step);
- ``train/alexnet``: ``alexnet train`` end to end, batch ``--e2e-batch`` (subprocesses: start-up, the
  epochs, validation, checkpoints, the final 10-crop evaluation, the weights file) on the prepared JPEG
  images: ``--epochs`` epochs (40 on CUDA: issue 11's "40 epochs of 3,500 images") after a first run of
  one epoch has filled the inductor cache, as any earlier run on the machine does; the wall time, the
  share of it spent in training steps, and where the rest went (``time`` in the run's summary.json),
  for both runs.

Timing: ``--warmup`` steps first (the first one timed alone: compilation and cuDNN's autotuning, reported
as ``first step``), then ``--steps`` timed steps ending with a device synchronisation. Then, on CUDA,
``--profile-steps`` steps under torch.profiler: a second table says where each model row's step spends its
time (the GPU's busy share and the device time by kind of kernel, ``benchmarks/breakdown.py``). The loader rows run
``--seconds`` each. One model and mode is compiled once and then timed on its three data sources.

Data: ``imagenette-train.tar.gz`` from ``--data`` (default ../shared/data, else ``data/gpu-bench``, where
``--pack`` puts a subset): the first ``--images`` images (a tenth per class), extracted and prepared once
(as raw and as JPEG) into ``--cache`` (default a temporary folder). The timing rows were sized for 4 to 5
minutes on an H200 from the 2026-11-29 figures (the budget: 6); with the ``checks``, ``fused-opt`` and
``raw-workers`` rows, the profiles and two end-to-end runs added since, estimated at 7 to 10 (never
measured: the suite has not run on a GPU yet; ``--rows`` runs a subset, e.g. in two calls). ``--device cpu --quick`` runs every row a CPU can (eager, no GPU
decoding, no checks) with tiny settings, in about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import breakdown  # noqa: E402
import loader as loader_bench  # noqa: E402
import train as train_bench  # noqa: E402
from common import SHARED, endless, machine_info, source_env, sync, write_json  # noqa: E402

from alexnet import runtime  # noqa: E402
from alexnet.data import jpeg, prepare_dataset  # noqa: E402

TAR = "imagenette-train.tar.gz"
PACK_DIR = ROOT / "data" / "gpu-bench"  # /data/ is git-ignored: carry it to the device machine
MODELS = ("alexnet", "alexnet_owt")
DATA = ("synthetic", "raw", "jpeg", "raw-workers")
LOADER_ROWS = ("raw", "raw-workers", "jpeg-gpu", "jpeg-cpu")
CUDA_ONLY = ("raw-workers", "jpeg-gpu", "checks")  # on a CPU the workers augment; no GPU to decode or check
CHECKS = ROOT / "tests" / "test_cuda.py"
CHECKS_TIMEOUT_S = 300
E2E_BATCH = 128  # alexnet train's default (the paper's), as in the 2026-11-29 end-to-end figure
BUDGET_S = 360  # issue 11: the whole suite in at most 6 minutes on one GPU
# The trainer's settings of each mode; the variants run on synthetic data only, against their base mode.
MODE_CONFIG = {"eager": {"compile": False}, "compiled": {"compile": True},
               "cudagraphs": {"compile": True, "compile_mode": "reduce-overhead"},
               "split": {"compile": False, "grouped_conv": "split"},
               "nchw": {"compile": False, "grouped_conv": "nchw"},
               "fused-opt": {"compile": True, "fused_optimizer": True},
               "graph": {"compile": True, "cuda_graph": True},
               "graph-fused": {"compile": True, "cuda_graph": True, "fused_optimizer": True}}
VARIANT_BASE = {"cudagraphs": "compiled", "fused-opt": "compiled", "graph": "compiled", "graph-fused": "compiled",
                "split": "eager", "nchw": "eager"}
GROUPED = ("alexnet",)  # the models with grouped convolutions (split / nchw apply)


@dataclass
class Settings:
    device: str
    batch: int
    steps: int
    warmup: int
    seconds: float
    images: int
    epochs: int
    e2e_batch: int
    workers: int
    models: tuple[str, ...]
    modes: tuple[str, ...]
    e2e_arch: str
    quick: bool
    profile_steps: int


def settings_for(args, device: torch.device) -> Settings:
    cuda = device.type == "cuda"
    if cuda:
        batch, steps, warmup, seconds, images, epochs = (256, 20, 5, 1.0, 2000, 2) if args.quick \
            else (256, 60, 10, 3.0, 4000, 40)
    else:
        batch, steps, warmup, seconds, images, epochs = (8, 1, 1, 0.3, 40, 1) if args.quick \
            else (64, 8, 2, 4.0, 640, 1)
    # the CUDA-graph modes last: a capture that fails there leaves every other row of the model measured
    modes = ("eager", "compiled", "fused-opt", "split", "nchw", "cudagraphs", "graph", "graph-fused") \
        if cuda else ("eager",)
    return Settings(device=str(device), batch=args.batch or batch, steps=args.steps or steps,
                    warmup=args.warmup if args.warmup is not None else warmup, seconds=args.seconds or seconds,
                    images=args.images or images, epochs=args.epochs or epochs,
                    e2e_batch=args.e2e_batch or (E2E_BATCH if cuda else args.batch or batch),
                    workers=args.workers or runtime.cpu_share(),
                    models=tuple(args.models.split(",")) if args.models else MODELS,
                    modes=tuple(args.modes.split(",")) if args.modes else modes,
                    e2e_arch=args.e2e_arch, quick=args.quick,
                    profile_steps=args.profile_steps if args.profile_steps is not None else (3 if cuda else 0))


def row_names(s: Settings, cuda: bool) -> list[str]:
    """Every row this device can run, in table order."""
    names = [f"{m}/{mode}/{d}" for m in s.models for mode in s.modes
             for d in (DATA if mode not in VARIANT_BASE else ("synthetic",))
             if d != "raw-workers" or (cuda and mode == "compiled")
             if mode not in ("split", "nchw") or m in GROUPED]
    names += [f"loader/{k}" for k in LOADER_ROWS if cuda or k not in CUDA_ONLY]
    return (["checks"] if cuda else []) + names + ["baseline", f"train/{s.e2e_arch}"]


def select(names: list[str], rows: str | None, cuda: bool) -> list[str]:
    if not rows:
        return names
    chosen = []
    for pattern in (p.strip() for p in rows.split(",") if p.strip()):
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            why = " (it needs CUDA)" if not cuda and any(k in pattern for k in CUDA_ONLY) else \
                " (on a CPU, add --modes eager,compiled)" if not cuda and "compiled" in pattern else ""
            raise SystemExit(f"--rows: no row matches {pattern!r}{why}; rows: {', '.join(names)}")
        chosen += [n for n in hits if n not in chosen]
    return [n for n in names if n in chosen]


# ---------------------------------------------------------------------------------------------- data
def find_tar(data: str | None) -> Path:
    for folder in ([Path(data)] if data else [SHARED, PACK_DIR]):
        if (folder / TAR).is_file():
            return folder / TAR
    where = data or f"{SHARED} or {PACK_DIR}"
    raise SystemExit(f"{TAR} not found in {where}: give --data DIR (a folder holding it), or make a subset "
                     f"that travels with `python benchmarks/gpu.py --pack` where ../shared/data is")


def pack(src: Path, dest: Path, count: int) -> Path:
    """Write ``dest/imagenette-train.tar.gz`` holding the first ``count`` images of ``src`` (a tenth per class),
    the images the suite would take from ``src`` with ``--images count``."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / TAR
    tmp = out.with_name(out.name + ".tmp")
    n = 0
    with tarfile.open(src) as tf, tarfile.open(tmp, "w:gz", compresslevel=1) as tw:
        for m in train_bench.imagenette_members(tf, count):
            tw.addfile(m, tf.extractfile(m))
            n += 1
    tmp.replace(out)
    print(f"wrote {out}: {n} images, {out.stat().st_size / 2**20:.1f} MiB")
    return out


class Data:
    """The Imagenette subset, extracted once and prepared once per format (kept in ``work``)."""

    def __init__(self, tar: Path, work: Path, images: int, workers: int):
        self.tar, self.work, self.images, self.workers = tar, work, images, workers
        self.prepare_seconds: dict[str, float] = {}
        self._folder: Path | None = None
        self._prepared: dict = {}

    def folder(self) -> Path:
        if self._folder is None:
            base = self.work / f"imagenette-{self.images}"
            marker = base / ".done"
            if not marker.exists():
                shutil.rmtree(base, ignore_errors=True)
                t0 = time.perf_counter()
                train_bench.image_folder(base, self.images, self.tar)
                marker.write_text("")
                self.prepare_seconds["extract"] = round(time.perf_counter() - t0, 2)
            self._folder = base / "images"
        return self._folder

    def prepared(self, fmt: str):
        if fmt not in self._prepared:
            folder = self.folder()
            t0 = time.perf_counter()
            self._prepared[fmt] = prepare_dataset(folder, self.work / f"imagenette-{self.images}-{fmt}", format=fmt,
                                                  workers=self.workers, progress=False)
            self.prepare_seconds[fmt] = round(time.perf_counter() - t0, 2)
            print(f"prepared {len(self._prepared[fmt])} images as {fmt} in {self.prepare_seconds[fmt]:.1f} s",
                  flush=True)
        return self._prepared[fmt]


# ---------------------------------------------------------------------------------------------- rows
def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _decoding(ds, device: torch.device, gpu_decode: bool) -> str | None:
    if getattr(ds, "storage", None) != "jpeg":
        return None
    where = device if gpu_decode else torch.device("cpu")
    return f"{'gpu' if gpu_decode else 'cpu'} ({jpeg.decoder(where)})"


def model_rows(arch: str, mode: str, wanted: list[str], data: Data, s: Settings, device: torch.device):
    """Rows ``arch/mode/*``: one trainer (compiled once), timed on each wanted data source in turn."""
    main_fmt = "raw" if "raw" in wanted else "jpeg"
    changes = dict(MODE_CONFIG[mode])
    trainer = train_bench.make_trainer(data.prepared(main_fmt), arch, batch=s.batch, device=s.device,
                                       workers=s.workers, compile_=changes.pop("compile"), **changes)
    r = trainer.resolved
    common = {"batch": s.batch, "steps": s.steps, "warmup": s.warmup, "precision": r.precision,
              "channels_last": r.channels_last, "compile": r.compile, "compile_mode": r.compile_mode,
              "grouped_conv": r.grouped_conv, "fused_optimizer": trainer.config.fused_optimizer, "cuda_graph": r.cuda_graph,
              "workers": s.workers}
    try:
        for kind in DATA:
            if kind not in wanted:
                continue
            loader = None
            if kind == "synthetic":
                source = train_bench.synthetic_batches(trainer)
            else:
                fmt, augment = ("raw", "workers") if kind == "raw-workers" else (kind, None)
                loader = trainer.train_loader if kind == main_fmt else \
                    trainer.loader(data.prepared(fmt), train=True, augment=augment)
                source = endless(loader)
            try:
                t = train_bench.time_steps(trainer, source, steps=s.steps, warmup=s.warmup)
                if s.profile_steps:
                    t.update(_profile(trainer, source, s.profile_steps))
            finally:
                if loader is not None:
                    source.close()
                    if loader is not trainer.train_loader:
                        loader.close()
            row = {**t, **common, "images": None if loader is None else len(loader.indices),
                   "decode": None if loader is None else _decoding(loader.dataset, device, loader.gpu_decode)}
            if r.compile and kind == wanted[0]:
                row["compile_s"] = t["first_step_s"]  # compilation happens in the group's first step
            yield f"{arch}/{mode}/{kind}", row
    finally:
        trainer.train_loader.close()
        del trainer
        _free(device)


def _profile(trainer, source, steps: int) -> dict:
    """``{"profile": ...}``: where the row's step spends its time (benchmarks/breakdown.py), after its timed
    steps; a profiler that fails is said in ``profile_error``, and the row's figures stand."""
    try:
        return {"profile": breakdown.profile_steps(trainer, source, steps=steps, top=8)}
    except Exception as e:
        return {"profile_error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def loader_row(kind: str, data: Data, s: Settings, device: torch.device) -> dict:
    """The Loader alone: training batches on the device, nothing consuming them."""
    ds = data.prepared("raw" if kind.startswith("raw") else "jpeg")
    gpu_decode = kind == "jpeg-gpu"
    gen = loader_bench.ours(ds, 1, s.workers, batch=s.batch, device=device, gpu_decode=gpu_decode,
                            channels_last=device.type == "cuda", augment="workers" if kind == "raw-workers" else None)
    try:
        r = loader_bench.measure(gen, s.seconds, min_batches=5, sync=lambda: sync(device))
    finally:
        gen.close()
        _free(device)
    return {**r, "batch": s.batch, "workers": s.workers, "images": len(ds), "decode": _decoding(ds, device, gpu_decode)}


def baseline_row(data: Data, s: Settings, device: torch.device) -> dict:
    folder = data.folder()
    t0 = time.perf_counter()
    rate = train_bench.time_baseline(folder, batch=s.batch, steps=s.steps, warmup=s.warmup, device=s.device,
                                     workers=s.workers)
    _free(device)
    return {"images_per_s": rate, "batch": s.batch, "steps": s.steps, "warmup": s.warmup, "workers": s.workers,
            "images": data.images, "precision": "fp32", "compile": False, "channels_last": False,
            "seconds_total": round(time.perf_counter() - t0, 2)}


def checks_row() -> dict:
    """tests/test_cuda.py in a subprocess: its pytest summary, and a row error naming what failed."""
    env = source_env()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CHECKS)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHECKS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"tests/test_cuda.py did not finish in {CHECKS_TIMEOUT_S} s") from None
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode:
        failed = [line.split(" ", 1)[1].split(" - ")[0] for line in lines if line.startswith("FAILED ")]
        raise RuntimeError(f"{summary}" + (f": {', '.join(failed)}" if failed else ""))
    return {"summary": summary, "seconds": round(time.perf_counter() - t0, 1)}


def e2e_row(arch: str, data: Data, s: Settings, device: torch.device) -> dict:
    """``alexnet train`` as a user runs it (its default batch), in a subprocess, twice on one inductor
    cache: a first run of one epoch on an empty cache (it compiles, as any first run on a machine does),
    then the timed run of ``s.epochs`` epochs, which loads its compiled graphs from that cache. Wall time,
    the share of it spent in training steps, and where the rest went (summary.json's ``time``)."""
    ds = data.prepared("jpeg")
    cache = data.work / f"inductor-{arch}"
    shutil.rmtree(cache, ignore_errors=True)
    first = _train_run(arch, ds, s, cache, data.work / f"run-{arch}-first", epochs=1)
    row = _train_run(arch, ds, s, cache, data.work / f"run-{arch}", epochs=s.epochs)
    row["first_run"] = {k: first[k] for k in ("wall_s", "epochs", "time", "train_share")}
    row["compile_cache"] = "filled by the first run"
    return row


def _train_run(arch: str, ds, s: Settings, cache: Path, out: Path, *, epochs: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "alexnet", "train", "--data", str(ds.path), "--arch", arch, "--epochs", str(epochs),
           "--batch-size", str(s.e2e_batch), "--device", s.device, "--workers", str(s.workers), "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=source_env(TORCHINDUCTOR_CACHE_DIR=str(cache)), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"alexnet train exited {proc.returncode}: " + " | ".join(tail))
    import yaml

    resolved = yaml.safe_load((out / "resolved.yaml").read_text())
    summary = json.loads((out / "summary.json").read_text())
    spent = summary["time"]
    per_epoch = int(resolved["steps_per_epoch"]) * int(resolved["batch_per_process"]) * int(resolved["world_size"])
    images = per_epoch * int(summary["epochs"])
    return {"images_per_s": images / wall, "wall_s": round(wall, 2), "epochs": int(summary["epochs"]),
            "train_images": per_epoch, "batch": int(resolved["batch_per_process"]),
            "train_steps_s": spent["training_s"], "train_share": round(spent["training_s"] / wall, 4),
            # what the trainer's clock does not see: the process's start (imports), opening the data before
            # the trainer is built, and after the run: summary.json, closing the loaders, the exit
            "time": {**spent, "outside_trainer_s": round(wall - spent["total_s"], 3)},
            "steps": int(summary.get("steps", 0)), "val_top1_err": summary.get("val_top1_err"),
            "precision": resolved["precision"], "channels_last": resolved["channels_last"],
            "compile": resolved["compile"], "decode": resolved.get("jpeg_decoder"),
            "command": " ".join(["alexnet", *cmd[3:]])}


def _spent(t: dict, top: int = 3) -> str:
    """The largest phases of a run's time other than the training steps: "compilation 40 s, ..."."""
    parts = sorted(((v, k[:-2].replace("_", " ")) for k, v in t.items() if k not in ("total_s", "training_s")),
                   reverse=True)[:top]
    return ", ".join(f"{name} {v:.1f} s" for v, name in parts if v >= 0.05)


# ---------------------------------------------------------------------------------------------- table
def _note(name: str, r: dict) -> str:
    if "error" in r:
        return "FAILED: " + r["error"]
    if name.startswith("train/"):
        f = r["first_run"]
        return (f"{r['epochs']} epoch{'s' * (r['epochs'] != 1)} of {r['train_images']:,} images (batch {r['batch']}) "
                f"in {r['wall_s']:.1f} s wall, training steps {r['train_steps_s']:.1f} s "
                f"({100 * r['train_share']:.0f}%); the rest: {_spent(r['time'])}. A first run (empty compile "
                f"cache, {f['epochs']} epoch): {f['wall_s']:.1f} s; {_spent(f['time'])}")
    if name == "checks":
        return f"tests/test_cuda.py: {r['summary']}"
    parts = []
    if name.startswith("loader/"):
        parts.append(f"{r['batches']} batches in {r['seconds']:.1f} s")
    elif name == "baseline":
        parts.append("torchvision alexnet, pytorch/examples loop, fp32")
    else:
        if r.get("compile_s") is not None:
            parts.append(f"first step {r['compile_s']:.1f} s (compiles)")
        elif r.get("first_step_s") is not None:
            parts.append(f"first step {r['first_step_s']:.1f} s")
    if r.get("decode"):
        parts.append(f"decode {r['decode']}")
    return "; ".join(p for p in parts if p)


def table(results: dict) -> str:
    m, st = results["machine"], results["settings"]
    where = m.get("gpu") or m["cpu"]
    lines = [f"GPU suite: {where}, {m['cpus']} CPUs, torch {m['torch']}, torchvision {m['torchvision']}, "
             f"{m['date']}; device {st['device']}, batch {st['batch']}, {st['steps']} timed steps after "
             f"{st['warmup']} warm-up, {results['data']['images']:,} Imagenette images"
             + (" (quick)" if st["quick"] else ""),
             f"{'row':<30} {'images/s':>10} {'% synth':>8} {'x base':>7}  notes"]
    for name, r in results["rows"].items():
        rate = f"{r['images_per_s']:>10,.0f}" if "images_per_s" in r else f"{'-':>10}"
        synth = f"{100 * r['vs_synthetic']:>7.0f}%" if r.get("vs_synthetic") is not None else f"{'':>8}"
        base = f"{r['vs_baseline']:>7.2f}" if r.get("vs_baseline") is not None else f"{'':>7}"
        lines.append(f"{name:<30} {rate} {synth} {base}  {_note(name, r)}")
    lines.append(f"total {results['total_seconds']:.0f} s (budget on a GPU: {BUDGET_S} s)")
    profiled = {n: r for n, r in results["rows"].items() if "profile" in r or "profile_error" in r}
    if profiled:
        kinds = [k for k in breakdown.ORDER if any(k in r.get("profile", {}).get("categories", {})
                                                    for r in profiled.values())]
        lines += ["", f"Where a step's time goes (torch.profiler over {st['profile_steps']} steps after the timed "
                  "ones; ms per step; kinds: benchmarks/breakdown.py)",
                  f"{'row':<30} {'wall':>6} {'busy':>5} " + " ".join(f"{k[:11]:>11}" for k in kinds)]
        for name, r in profiled.items():
            p = r.get("profile")
            if p is None:
                lines.append(f"{name:<30} profiler failed: {r['profile_error']}")
                continue
            busy = f"{100 * p['busy_share']:>4.0f}%" if p.get("busy_share") is not None else f"{'-':>5}"
            lines.append(f"{name:<30} {p['wall_ms']:>6.1f} {busy} "
                         + " ".join(f"{p['categories'].get(k, 0.0):>11.2f}" for k in kinds))
    return "\n".join(lines)


def _ratios(rows: dict) -> None:
    base = rows.get("baseline", {}).get("images_per_s")
    for name, r in rows.items():
        parts = name.split("/")
        if len(parts) != 3 or "images_per_s" not in r:
            continue
        mode = VARIANT_BASE.get(parts[1], parts[1])  # a variant: against the mode it modifies
        synth = rows.get(f"{parts[0]}/{mode}/synthetic", {}).get("images_per_s")
        r["vs_synthetic"] = round(r["images_per_s"] / synth, 3) if synth else None
        r["vs_baseline"] = round(r["images_per_s"] / base, 3) if base else None


# ---------------------------------------------------------------------------------------------- main
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON here (after every row)")
    ap.add_argument("--rows", metavar="NAMES", help="comma-separated row names or patterns (default: all)")
    ap.add_argument("--device", default="auto", help="auto, cuda or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny settings (a smoke test: under a minute on a CPU)")
    ap.add_argument("--data", metavar="DIR", help=f"folder holding {TAR} (default: ../shared/data, else data/gpu-bench)")
    ap.add_argument("--cache", metavar="DIR", help="keep the extracted and prepared images here between runs")
    ap.add_argument("--pack", metavar="DIR", nargs="?", const=str(PACK_DIR),
                    help=f"only write DIR/{TAR} with the first --images images (default DIR: data/gpu-bench) and exit")
    ap.add_argument("--images", type=int, help="Imagenette images to use (CUDA 4000, quick 2000; CPU 640, quick 40)")
    ap.add_argument("--batch", type=int, help="batch size (CUDA 256; CPU 64, quick 8)")
    ap.add_argument("--steps", type=int, help="timed steps per row (CUDA 60, quick 20; CPU 8, quick 1)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (CUDA 10, quick 5; CPU 2, quick 1)")
    ap.add_argument("--seconds", type=float, help="seconds per loader row (CUDA 3, quick 1; CPU 4, quick 0.3)")
    ap.add_argument("--epochs", type=int, help="epochs of the end-to-end run (CUDA 40, quick 2; CPU 1)")
    ap.add_argument("--workers", type=int, help="loader workers (default: this process's CPUs)")
    ap.add_argument("--models", help=f"comma-separated (default {','.join(MODELS)})")
    ap.add_argument("--modes", help="comma-separated of eager, compiled, cudagraphs, fused-opt, graph, graph-fused, split, "
                    "nchw (default: all on "
                    "CUDA, eager on a CPU)")
    ap.add_argument("--profile-steps", type=int, help="steps profiled per model row after its timed ones, for the "
                    "breakdown table (CUDA 3; CPU 0: none)")
    ap.add_argument("--e2e-arch", default="alexnet", help="model of the end-to-end run (default alexnet)")
    ap.add_argument("--e2e-batch", type=int, help=f"batch of the end-to-end run (CUDA {E2E_BATCH}, alexnet train's "
                    "default; CPU: --batch)")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    if args.pack:
        src = find_tar(args.data if args.data else str(SHARED))
        pack(src, Path(args.pack), args.images or 4000)
        return 0

    start = time.perf_counter()
    device = runtime.resolve_device(args.device)
    cuda = device.type == "cuda"
    s = settings_for(args, device)
    names = select(row_names(s, cuda), args.rows, cuda)
    tar = find_tar(args.data)
    machine = machine_info(device)
    results: dict = {"machine": machine, "settings": asdict(s), "data": {"tar": str(tar), "images": s.images},
                     "rows": {}, "complete": False, "total_seconds": 0.0}
    print(f"machine: {machine}\nrows: {', '.join(names)}", flush=True)

    def save() -> None:
        results["total_seconds"] = round(time.perf_counter() - start, 1)
        _ratios(results["rows"])
        if args.json:
            write_json(Path(args.json), results)

    def record(name: str, row: dict) -> None:
        results["rows"][name] = row
        save()
        rate = f"{row['images_per_s']:,.0f} images/s" if "images_per_s" in row else ""
        print(f"  {name:<30} {rate:>18}  {_note(name, row)}  [{time.perf_counter() - start:.0f} s]", flush=True)

    work = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="alexnet-bench-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    data = Data(tar, work, s.images, s.workers)
    try:
        if "checks" in names:
            try:
                record("checks", checks_row())
            except Exception as e:
                record("checks", {"error": f"{type(e).__name__}: {e}"})
        for arch in s.models:
            for mode in s.modes:
                wanted = [d for d in DATA if f"{arch}/{mode}/{d}" in names]
                if not wanted:
                    continue
                try:
                    for name, row in model_rows(arch, mode, wanted, data, s, device):
                        record(name, row)
                except Exception as e:  # a failed row says why, and the suite goes on
                    for d in wanted:
                        if f"{arch}/{mode}/{d}" not in results["rows"]:
                            record(f"{arch}/{mode}/{d}", {"error": f"{type(e).__name__}: {e}"})
        for name in names:
            if name.startswith("loader/"):
                run = lambda name=name: loader_row(name.split("/", 1)[1], data, s, device)  # noqa: E731
            elif name == "baseline":
                run = lambda: baseline_row(data, s, device)  # noqa: E731
            elif name.startswith("train/"):
                run = lambda name=name: e2e_row(name.split("/", 1)[1], data, s, device)  # noqa: E731
            else:
                continue
            try:
                record(name, run())
            except Exception as e:
                record(name, {"error": f"{type(e).__name__}: {e}"})
        results["data"]["prepare_seconds"] = data.prepare_seconds
        results["data"]["images"] = len(next(iter(data._prepared.values()))) if data._prepared else s.images
        results["complete"] = True
        save()
    finally:
        if not args.cache:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(results))
    if args.json:
        print(f"wrote {args.json}")
    failed = [n for n, r in results["rows"].items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
