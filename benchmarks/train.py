"""Training benchmark: images/s of this trainer against what users would otherwise write.

    python benchmarks/train.py [--quick] [--json PATH] [--models alexnet_owt,alexnet] [--device auto]

On the same images (Imagenette JPEGs from ../shared/data, or generated ones when it is absent), the same
batch and the same device, in one run:

- ``ours``: :class:`alexnet.training.Trainer`'s own step (the paper's SGD, device-side metrics, no host
  sync per step) fed by :class:`alexnet.data.Loader` over the images prepared with ``alexnet prepare``
  (random 224 crops, mirrors, PCA lighting, mean image), for each model in ``--models``;
- ``baseline``: ``torchvision.models.alexnet`` trained by the pytorch/examples ImageNet loop:
  ``ImageFolder`` + ``RandomResizedCrop(224)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` +
  ``DataLoader(shuffle=True, num_workers=W, pin_memory on CUDA)`` + ``torch.optim.SGD(lr 0.01, momentum
  0.9, weight decay 1e-4)``, with its per-step ``loss.item()`` and top-1/top-5 accuracy bookkeeping.
  ``W`` = the workers our loader uses (the CPUs of the machine).

torchvision's ``alexnet`` is the same network as our ``alexnet_owt``: that pair is the like-for-like
comparison; ``alexnet`` (the paper's net: LRN, two towers) is listed for what it costs.

Timing: the first steps (warm-up: worker start, allocator, cuDNN autotuning, compilation) are excluded;
then ``steps`` steps are timed, ending with a device synchronisation. Each measurement is repeated
``--repeats`` times, alternating ours and baseline, and the median with min..max is reported.

CUDA (when available): also synthetic on-device data (one fixed random batch: the model and optimizer
alone) for batch 128/256/512, eager and ``torch.compile``, bf16 autocast and channels_last as the trainer
uses them; and prepared data for the same batches, whose ratio to synthetic shows how well loading
overlaps compute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import SHARED, endless, machine_info, sync  # noqa: E402

from alexnet.training import TrainConfig  # noqa: E402
from alexnet.training.trainer import Trainer  # noqa: E402


# ---------------------------------------------------------------------------------------------- data
def imagenette_members(tf: tarfile.TarFile, count: int):
    """The first ``count // 10`` JPEGs of each class folder of an open Imagenette tar, up to ``count``."""
    per_class = max(1, count // 10)
    seen: dict[str, int] = {}
    for m in tf:
        if not m.isreg() or not m.name.lower().endswith((".jpeg", ".jpg")):
            continue
        cls = Path(m.name).parent.name
        if seen.get(cls, 0) >= per_class:
            continue
        seen[cls] = seen.get(cls, 0) + 1
        yield m
        if sum(seen.values()) >= count:
            break


def image_folder(dest: Path, count: int, tar: Path | None = None) -> Path:
    """``count`` JPEGs in class folders: Imagenette's (the first images of each class; from ``tar``, by
    default ../shared/data's), else generated."""
    root = dest / "images"
    tar = tar or SHARED / "imagenette-train.tar.gz"
    if tar.is_file():
        with tarfile.open(tar) as tf:
            for m in imagenette_members(tf, count):
                out = root / Path(m.name).parent.name / Path(m.name).name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tf.extractfile(m).read())
        return root
    from PIL import Image

    from alexnet.data.demo import DEMO_CLASSES, make_demo_images

    images, labels, _ = make_demo_images(count, 256, seed=0)
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        out = root / DEMO_CLASSES[y].replace(" ", "_") / f"{i:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(out, quality=90)
    return root


def prepare(folder: Path, dest: Path):
    from alexnet.data import prepare_dataset

    t0 = time.perf_counter()
    ds = prepare_dataset(folder, dest / "prepared", progress=False)
    return ds, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- timing
def make_trainer(dataset, arch: str, *, batch: int, device: str, workers: int | None,
                 compile_: bool | None = None, **changes) -> Trainer:
    """A Trainer (no run directory) as ``alexnet train`` would build it for this model, batch and device:
    precision, channels_last and (when ``compile_`` is None) compilation as it resolves them; ``changes``:
    other TrainConfig fields (``compile_mode``, ``grouped_conv``)."""
    if compile_:
        # Dynamo's cache outlives the model: a new batch size after another would be compiled as a dynamic
        # shape, which the trainer (one batch size per run) never runs.
        torch._dynamo.reset()
    config = TrainConfig(arch=arch, batch_size=batch, val_split=0.0, ten_crop=False, device=device,
                         workers=workers, compile=compile_, epochs=1, **changes)
    trainer = Trainer(config, dataset=dataset, run_dir=None, progress=False, handle_signals=False)
    trainer.train_model.train()
    return trainer


def synthetic_batches(trainer: Trainer):
    """One fixed random batch on the trainer's device, in its memory format, forever."""
    batch = trainer.resolved.batch_per_process
    x = torch.randn(batch, 3, trainer.resolved.crop_size, trainer.resolved.crop_size, device=trainer.device)
    if trainer.resolved.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, len(trainer.classes), (batch,), device=trainer.device)
    return iter(lambda: (x, y), None)


def time_steps(trainer: Trainer, source, *, steps: int, warmup: int) -> dict:
    """Time the trainer's step on ``source``'s batches: ``warmup`` steps (the first one timed alone: it
    holds compilation and cuDNN's autotuning), then ``steps`` timed steps ending with a device sync.
    Returns images_per_s, seconds (of the timed steps) and first_step_s."""
    first = None
    sync(trainer.device)
    for i in range(warmup):
        t0 = time.perf_counter()
        trainer.train_step(*next(source))
        if i == 0:
            sync(trainer.device)
            first = time.perf_counter() - t0
    sync(trainer.device)
    t0 = time.perf_counter()
    images = 0
    for _ in range(steps):
        x, y = next(source)
        trainer.train_step(x, y)
        images += len(y)
    trainer.meter.values()  # the once-per-interval read the trainer does anyway
    sync(trainer.device)
    seconds = time.perf_counter() - t0
    return {"images_per_s": images / seconds, "seconds": seconds, "first_step_s": first}


def time_ours(dataset, arch: str, *, batch: int, steps: int, warmup: int, device: str, workers: int | None,
              compile_: bool | None = None, synthetic: bool = False) -> float:
    """Images/s of the trainer's step on the Loader's batches (or on one fixed on-device batch)."""
    trainer = make_trainer(dataset, arch, batch=batch, device=device, workers=workers, compile_=compile_)
    try:
        source = synthetic_batches(trainer) if synthetic else endless(trainer.train_loader)
        return time_steps(trainer, source, steps=steps, warmup=warmup)["images_per_s"]
    finally:
        trainer.train_loader.close()


def time_baseline(folder: Path, *, batch: int, steps: int, warmup: int, device: str, workers: int) -> float:
    """Images/s of the pytorch/examples ImageNet loop with torchvision.models.alexnet."""
    import torchvision
    from torchvision import datasets, transforms

    dev = torch.device(device)
    normalize = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    train_dataset = datasets.ImageFolder(str(folder), transforms.Compose([
        transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]))
    loader = torch.utils.data.DataLoader(train_dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         pin_memory=dev.type == "cuda", persistent_workers=workers > 0,
                                         drop_last=True)
    model = torchvision.models.alexnet(num_classes=len(train_dataset.classes)).to(dev)
    criterion = torch.nn.CrossEntropyLoss().to(dev)
    optimizer = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=1e-4)
    model.train()

    def batches():
        while True:
            yield from loader

    it = batches()

    def step(images, target):
        images = images.to(dev, non_blocking=True)
        target = target.to(dev, non_blocking=True)
        output = model(images)
        loss = criterion(output, target)
        _, pred = output.topk(5, 1, True, True)  # examples' accuracy(output, target, topk=(1, 5))
        correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
        acc1 = correct[:1].reshape(-1).float().sum(0) * (100.0 / batch)
        acc5 = correct[:5].reshape(-1).float().sum(0) * (100.0 / batch)
        _ = (loss.item(), acc1.item(), acc5.item())  # losses.update(loss.item(), ...) etc.: a sync per step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step(*next(it))
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(*next(it))
    sync(dev)
    rate = steps * batch / (time.perf_counter() - t0)
    it.close()  # the worker processes end with the loader, when this function returns
    return rate


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer images, steps and repeats (a few minutes on a CPU)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--models", default=None, help="comma-separated models for 'ours' (default: alexnet_owt,alexnet)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--batch", type=int, default=None, help="CPU batch size (default 64; quick 32)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    ap.add_argument("--repeats", type=int, default=None, help="measurements per configuration")
    ap.add_argument("--images", type=int, default=None, help="images to extract and prepare")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    cuda = device.type == "cuda"
    models = (args.models or ("alexnet_owt" if args.quick else "alexnet_owt,alexnet")).split(",")
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cuda:
        batch, steps, warmup = 128, args.steps or (20 if args.quick else 50), 10
        # all of Imagenette (9,469) for the full run: 18 steps of 512 per epoch, so that epoch starts
        # (the loader's first batches) are a small part of the prepared-data timing
        images = args.images or (2048 if args.quick else 10_000)
    else:
        batch = args.batch or (32 if args.quick else 64)
        steps, warmup = args.steps or (4 if args.quick else 8), 2
        images = args.images or (256 if args.quick else 640)
    repeats = args.repeats or (1 if args.quick else 3)
    results: dict = {"machine": machine_info(device), "device": str(device), "batch": batch, "steps": steps,
                     "warmup_steps": warmup, "repeats": repeats, "workers": workers, "rows": []}
    print(f"machine: {results['machine']}")

    with tempfile.TemporaryDirectory(prefix="alexnet-bench-train-") as tmp:
        tmp = Path(tmp)
        folder = image_folder(tmp, images)
        dataset, prep_s = prepare(folder, tmp)
        results["images"], results["prepare_seconds"] = len(dataset), prep_s
        print(f"{len(dataset)} images prepared in {prep_s:.1f} s; batch {batch}, {steps} timed steps after "
              f"{warmup} warm-up, {repeats} repeats, {workers} loader workers, device {device}")

        def record(name: str, model: str, values: list[float], **extra) -> None:
            row = {"pipeline": name, "model": model, "batch": extra.pop("batch", batch), **extra,
                   "images_per_s": summary(values)}
            results["rows"].append(row)
            s = row["images_per_s"]
            tags = " ".join(f"{k}={v}" for k, v in extra.items())
            print(f"  {name:<9} {model:<12} batch {row['batch']:<4} {tags:<30} {s['median']:>9,.1f} img/s "
                  f"({s['min']:,.1f}..{s['max']:,.1f})", flush=True)

        # ---- ours vs baseline, same data, batch and device (alternating, to share the machine's moods)
        ours = {m: [] for m in models}
        base = []
        for _ in range(repeats):
            for m in models:
                ours[m].append(time_ours(dataset, m, batch=batch, steps=steps, warmup=warmup, device=str(device),
                                         workers=workers, compile_=False if not cuda else None))
            base.append(time_baseline(folder, batch=batch, steps=steps, warmup=warmup, device=str(device),
                                      workers=workers))
        record("baseline", "torchvision", base)
        for m in models:
            record("ours", m, ours[m])
        if "alexnet_owt" in models:
            ratio = statistics.median(ours["alexnet_owt"]) / statistics.median(base)
            results["owt_vs_baseline"] = ratio
            print(f"ours (alexnet_owt) / baseline (torchvision alexnet, same network): {ratio:.2f}x")

        # ---- CUDA: synthetic vs prepared data, batch 128/256/512, eager vs compiled (bf16, channels_last)
        if cuda:
            gpu_steps = steps
            for m in models:
                for b in (128, 256, 512):
                    for compiled in (False, True):
                        synth = time_ours(dataset, m, batch=b, steps=gpu_steps, warmup=warmup, device=str(device),
                                          workers=workers, compile_=compiled, synthetic=True)
                        record("synthetic", m, [synth], batch=b, compiled=compiled)
                        real = time_ours(dataset, m, batch=b, steps=gpu_steps, warmup=warmup, device=str(device),
                                         workers=workers, compile_=compiled)
                        record("prepared", m, [real], batch=b, compiled=compiled, vs_synthetic=round(real / synth, 3))

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
