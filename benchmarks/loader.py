"""Loader benchmark: ready training batches per second on CPU, ours against plain torchvision.

    python benchmarks/loader.py [--quick] [--json PATH] [--workers N] [--seconds S] [--cache DIR]

Every pipeline produces the same thing: batches of 128 float32 224x224 random crops with random mirror
images, normalised, on the CPU (ours adds the paper's PCA lighting and subtracts the mean image):

- ``prepared-raw``:  ``alexnet.data.Loader`` over a dataset prepared with ``--format raw``;
- ``prepared-jpeg``: the same over ``--format jpeg`` (quality 90), decoded by TorchCodec where it works
  (the default, see ``alexnet.data.jpeg``), and ``prepared-jpeg-tv`` the same with torchvision.io's
  deprecated decoder (the fallback, and what the loader used before): the before/after of that move;
- ``torchvision``:   what users would otherwise write: ``ImageFolder`` + ``transforms.v2`` Resize(256),
  RandomCrop(224), RandomHorizontalFlip, ToDtype, Normalize + ``DataLoader`` with the same number of
  workers (persistent, default prefetch).

on the same images: the 204 full-size ImageNet samples and Imagenette (224px JPEGs) from
../shared/data (extracted to a temporary folder for ImageFolder; prepared from that folder). Small
datasets are repeated (the loaders see each image several times per epoch) so that an epoch is long
enough to measure. The first batches (worker start-up, page cache) are excluded; the time for the
preparation, done once, is reported separately. One run; ``--quick`` takes a subset of Imagenette and
shorter measurements (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import endless, machine_info, write_json  # noqa: E402

from alexnet.data import Loader, PreparedDataset, jpeg, prepare_dataset  # noqa: E402
from alexnet.runtime import cpu_share  # noqa: E402

BATCH = 128
CROP = 224
WARMUP_BATCHES = 2


def extract(tar_path: Path, dest: Path, every: int = 1) -> Path:
    """Extract a tar.gz of class folders (every ``every``-th image per class); return the class-folder root."""
    roots = set()
    with tarfile.open(tar_path) as tf:
        seen: dict[str, int] = {}
        for m in tf:
            if not m.isreg():
                continue
            parent = os.path.dirname(m.name)
            seen[parent] = seen.get(parent, 0) + 1
            if (seen[parent] - 1) % every:
                continue
            out = dest / m.name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tf.extractfile(m).read())
            roots.add(os.path.dirname(parent))
    assert len(roots) == 1, roots
    return dest / roots.pop()


def measure(batches, seconds: float, min_batches: int = 5, sync=None) -> dict:
    """Consume an endless batch iterator: skip the warm-up, then time ``seconds`` (and >= min_batches).
    ``sync``: called before the clock starts and before it stops (a CUDA synchronisation: batches on a GPU
    are ready only when their kernels have run)."""
    it = iter(batches)
    for _ in range(WARMUP_BATCHES):
        next(it)
    if sync is not None:
        sync()
    n_img = n_batch = 0
    t0 = time.perf_counter()
    while True:
        x, y = next(it)
        assert x.shape[1:] == (3, CROP, CROP) and x.dtype == torch.float32
        n_img += x.shape[0]
        n_batch += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n_batch >= min_batches:
            break
    if sync is not None:
        sync()
        elapsed = time.perf_counter() - t0
    return {"images_per_s": n_img / elapsed, "batches_per_s": n_batch / elapsed, "batches": n_batch,
            "seconds": round(elapsed, 2)}


def ours(ds: PreparedDataset, repeats: int, workers: int, decoder: str | None = None, *, batch: int = BATCH,
         device: str | torch.device = "cpu", gpu_decode: bool | None = None, channels_last: bool = False,
         augment: str | None = None):
    """Our Loader's training batches over ``ds`` (repeated ``repeats`` times per epoch), epoch after epoch."""
    jpeg.use(decoder)
    loader = Loader(ds, batch, train=True, crop_size=CROP, indices=np.tile(np.arange(len(ds)), repeats),
                    workers=workers, device=device, gpu_decode=gpu_decode, channels_last=channels_last,
                    augment=augment)
    try:
        yield from endless(loader)
    finally:
        loader.close()


def torchvision_pipeline(folder: Path, repeats: int, workers: int):
    """The usual ImageFolder + transforms.v2 + DataLoader, as the torchvision docs and examples write it."""
    from torchvision import datasets
    from torchvision.transforms import v2

    tf = v2.Compose([
        v2.Resize(256, antialias=True),  # on the PIL image (the fastest of the usual orderings here)
        v2.RandomCrop(CROP),
        v2.RandomHorizontalFlip(),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    ds = datasets.ImageFolder(str(folder), transform=tf)
    sampler = torch.utils.data.RandomSampler(ds, num_samples=len(ds) * repeats)
    dl = torch.utils.data.DataLoader(ds, batch_size=BATCH, sampler=sampler, num_workers=workers,
                                     drop_last=True, persistent_workers=workers > 0)
    while True:
        yield from dl


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a subset and short measurements (~1 minute)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    p.add_argument("--workers", type=int, default=cpu_share(), help="loader workers for all pipelines")
    p.add_argument("--seconds", type=float, default=None, help="measuring time per pipeline")
    p.add_argument("--cache", metavar="DIR", help="keep extracted and prepared data here between runs")
    args = p.parse_args(argv)
    data = Path(args.data)
    seconds = args.seconds or (4.0 if args.quick else 20.0)
    work = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="alexnet-bench-"))
    sets = [("imagenet-samples", data / "imagenet-samples.tar.gz", 1, 40),
            ("imagenette", data / "imagenette-train.tar.gz", 10 if args.quick else 1, 4 if args.quick else 1)]
    info = {"machine": machine_info(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "batch": BATCH, "crop": CROP, "workers": args.workers, "quick": args.quick, "results": {}}
    print(f"{info['machine']['cpu']}, {args.workers} workers, load {info['machine']['load_average_at_start']}",
          file=sys.stderr)
    try:
        for name, tar, every, repeats in sets:
            if not tar.is_file():
                print(f"skipping {name}: {tar} not found", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            folder_root = work / f"{name}-every{every}"
            marker = folder_root / ".done"
            if not marker.exists():
                shutil.rmtree(folder_root, ignore_errors=True)
                folder = extract(tar, folder_root, every)
                marker.write_text(str(folder))
            folder = Path(marker.read_text())
            n_files = sum(len(f) for _, _, f in os.walk(folder))
            rows = []
            prepared = {}
            for fmt in ("raw", "jpeg"):
                t1 = time.perf_counter()
                prepared[fmt] = prepare_dataset(folder, work / f"{name}-every{every}-{fmt}", format=fmt,
                                                workers=args.workers, progress=False)
                print(f"{name}: prepared {len(prepared[fmt])} images as {fmt} in {time.perf_counter() - t1:.1f}s",
                      file=sys.stderr)
            print(f"{name}: {n_files} images ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            reps = max(1, repeats)
            for label, gen in (("torchvision", torchvision_pipeline(folder, reps, args.workers)),
                               ("prepared-raw", ours(prepared["raw"], reps, args.workers)),
                               ("prepared-jpeg", ours(prepared["jpeg"], reps, args.workers)),
                               ("prepared-jpeg-tv", ours(prepared["jpeg"], reps, args.workers, "torchvision"))):
                r = measure(gen, seconds)
                gen.close()
                jpeg.use(None)
                if label == "prepared-jpeg":
                    r["decoder"] = jpeg.decoder()
                r = {"name": label, **{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()},
                     "images": n_files}
                rows.append(r)
                print(f"{name}: {label}: {r['images_per_s']:.0f} images/s", file=sys.stderr)
            base = next(r for r in rows if r["name"] == "torchvision")["images_per_s"]
            for r in rows:
                r["vs_torchvision"] = round(r["images_per_s"] / base, 2)
            info["results"][name] = rows
    finally:
        if not args.cache:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"Loader benchmark: batch {BATCH}, {CROP} crops, flip, normalised, CPU; {args.workers} workers; "
          f"{info['machine']['cpu']}; {info['date'][:10]}" + (" (quick)" if args.quick else ""))
    print(f"{'data set':<18} {'pipeline':<16} {'images/s':>9} {'batches/s':>9} {'x torchvision':>13}")
    for name, rows in info["results"].items():
        for r in rows:
            print(f"{name:<18} {r['name']:<16} {r['images_per_s']:>9.0f} {r['batches_per_s']:>9.2f} "
                  f"{r['vs_torchvision']:>13.2f}")
    if args.json:
        write_json(Path(args.json), info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
