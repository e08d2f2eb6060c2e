"""The paper's ablations: the full model against each of its switches, same budget, same seed.

Sections 3.3-4.2 of the paper report what each ingredient is worth in top-1/top-5 error (PAPER.md):

| switch            | model / data change                                       | paper's change when removed |
|-------------------|-----------------------------------------------------------|-----------------------------|
| ``no_lrn``        | ``lrn=False``                                             | +1.4 / +1.2                 |
| ``no_overlap``    | ``overlap_pool=False`` (2x2 stride-2 pooling)             | +0.4 / +0.3                 |
| ``one_tower``     | ``towers=1`` (one net with half the kernels in conv1-4)   | +1.7 / +1.2                 |
| ``no_lighting``   | PCA lighting off (alphas ~ N(0, 0) instead of N(0, 0.1))  | over +1 top-1               |
| ``no_dropout``    | ``dropout=0``                                             | not given ("substantial overfitting") |

Every model here trains from the same seed (same data order and augmentation draws; initial weights
drawn from the same generator state) for the same number of epochs with the paper's recipe: the paper's
SGD update (:class:`~alexnet.training.optim.PaperSGD`), momentum 0.9, weight decay 5e-4, batch 128,
learning rate 0.01, random 224 crops + mirrors + PCA lighting from the data's own PCA. The paper divides
the learning rate by 10 when the validation error stops improving; a short ablation budget never gets
there, so the rate stays constant here (state the budget with the results). Each model is evaluated on
the validation images with the centre crop and with the paper's 10 crops (:func:`alexnet.evaluate`).

The loop is a lean one over the data package's :class:`~alexnet.data.Loader` (the full trainer's
schedules, checkpoints and DDP are not needed for a fixed, short budget). Each model gets a run
directory laid out like ``alexnet train``'s (``config.json``, ``metrics.csv``, ``weights.safetensors``),
so ``alexnet report`` works on it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from alexnet.errors import BadOptionError, UserError


@dataclass(frozen=True)
class Ablation:
    name: str
    change: str
    model_options: dict = field(default_factory=dict)
    lighting: bool = True
    paper: str = ""  # the paper's reported change in top-1 / top-5 error (percentage points) when removed


ABLATIONS: dict[str, Ablation] = {a.name: a for a in (
    Ablation("full", "the paper's model", paper="(reference)"),
    Ablation("no_lrn", "no local response normalisation", {"lrn": False}, paper="+1.4 / +1.2"),
    Ablation("no_overlap", "non-overlapping pooling (2x2, stride 2)", {"overlap_pool": False}, paper="+0.4 / +0.3"),
    Ablation("one_tower", "one tower with half the kernels (conv1-4)", {"towers": 1}, paper="+1.7 / +1.2"),
    Ablation("no_lighting", "no PCA lighting", lighting=False, paper="> +1 / -"),
    Ablation("no_dropout", "no dropout", {"dropout": 0.0}, paper="- (overfits)"),
)}

PAPER_LIGHTING = 0.1


@dataclass
class AblationConfig:
    """The budget every model of an ablation run gets (the same for all)."""

    epochs: int
    arch: str = "alexnet"
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    device: str | None = None  # default: cuda when available
    workers: int | None = None
    ten_crop: bool = True
    val_fraction: float = 0.1
    train_subset: int | None = None  # a stratified subset of the training images (small-scale runs)
    val_subset: int | None = None  # a stratified subset of the validation images
    only: list[str] | None = None
    eval_batch_size: int = 64

    def validate(self) -> None:
        if self.epochs < 1:
            raise BadOptionError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise BadOptionError(f"batch size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadOptionError(f"learning rate must be positive, got {self.lr}")
        if not 0 < self.val_fraction < 1:
            raise BadOptionError(f"val fraction must be between 0 and 1, got {self.val_fraction}")
        for name, v in (("train subset", self.train_subset), ("val subset", self.val_subset)):
            if v is not None and v < 1:
                raise BadOptionError(f"{name} must be at least 1, got {v}")
        unknown = [n for n in self.only or () if n not in ABLATIONS]
        if unknown:
            raise BadOptionError(f"unknown ablation {', '.join(unknown)}; choose from {', '.join(ABLATIONS)}")

    @property
    def names(self) -> list[str]:
        names = list(self.only) if self.only else list(ABLATIONS)
        if "full" not in names:  # differences need the reference
            names.insert(0, "full")
        return [n for n in ABLATIONS if n in names]


@dataclass
class AblationResult:
    name: str
    top1: float  # centre crop, percent
    top5: float
    top1_10: float | None  # 10 crops, percent
    top5_10: float | None
    train_error: float  # running top-1 error over the last epoch, percent
    images: int
    train_seconds: float
    eval_seconds: float


@dataclass
class AblationTable:
    config: AblationConfig
    results: dict[str, AblationResult]
    train_images: int
    val_images: int
    data: str = ""
    val: str = ""

    def rows(self) -> list[dict]:
        full = self.results.get("full")
        rows = []
        for name, r in self.results.items():
            a = ABLATIONS[name]

            def diff(x, ref, is_full=name == "full"):
                return None if x is None or ref is None or is_full else x - ref

            rows.append({
                "name": name, "change": a.change, "top1": r.top1, "top5": r.top5, "top1_10": r.top1_10,
                "top5_10": r.top5_10, "train_error": r.train_error,
                "d_top1": diff(r.top1, full.top1 if full else None), "d_top5": diff(r.top5, full.top5 if full else None),
                "d_top1_10": diff(r.top1_10, full.top1_10 if full else None),
                "d_top5_10": diff(r.top5_10, full.top5_10 if full else None), "paper": a.paper})
        return rows

    def markdown(self) -> str:
        """The paper's form: each model's top-1/top-5 error, its difference to the full model, and the
        difference the paper reports, beside it."""
        c = self.config

        def pct(v):
            return "-" if v is None else f"{v:.1f}"

        def delta(a, b):
            if a is None:
                return "-" if b is None else f"{b:+.1f}"
            return f"{a:+.1f} / {b:+.1f}" if b is not None else f"{a:+.1f}"

        ten = c.ten_crop
        head = ["model", "change", "top-1 (1 crop)", "top-5 (1 crop)"]
        if ten:
            head += ["top-1 (10 crops)", "top-5 (10 crops)"]
        head += ["Δ vs full, 1 crop", *(["Δ vs full, 10 crops"] if ten else []), "paper's Δ", "train err (last epoch)"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for r in self.rows():
            cells = [f"`{r['name']}`", r["change"], pct(r["top1"]), pct(r["top5"])]
            if ten:
                cells += [pct(r["top1_10"]), pct(r["top5_10"])]
            full = r["name"] == "full"
            cells.append("(reference)" if full else delta(r["d_top1"], r["d_top5"]))
            if ten:
                cells.append("(reference)" if full else delta(r["d_top1_10"], r["d_top5_10"]))
            cells += [r["paper"], pct(r["train_error"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(f"Errors in percent on {self.val_images} validation images; Δ = model minus full model "
                     f"(top-1 / top-5, percentage points; positive = the switch hurts). Budget per model: "
                     f"{c.epochs} epoch(s) on {self.train_images} training images, batch {c.batch_size}, "
                     f"lr {c.lr:g} constant, seed {c.seed}.")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "train_images": self.train_images, "val_images": self.val_images,
                "data": self.data, "val": self.val, "rows": self.rows()}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _stratified(labels: np.ndarray, indices: np.ndarray, count: int, seed: int) -> np.ndarray:
    """About ``count`` of ``indices``, the same number from each class (as far as they go)."""
    from alexnet.experiments.images import stratified_subset

    classes = np.unique(labels[indices])
    per_class = max(1, count // max(len(classes), 1))
    chosen = stratified_subset(labels[indices], per_class, seed)
    return np.sort(indices[chosen])


def train_one(ablation: Ablation, dataset, train_idx: np.ndarray, config: AblationConfig, run_dir: Path,
              device: torch.device, log: Callable[[str], None], val: str | None = None) -> tuple[float, float]:
    """Train one model of the ablation into ``run_dir``; returns (last epoch's running error %, seconds)."""
    from alexnet.data import Loader
    from alexnet.models import create_model, model_info
    from alexnet.training.optim import PaperSGD
    from alexnet.weights import save_weights

    info = model_info(config.arch)
    torch.manual_seed(config.seed)
    model = create_model(config.arch, num_classes=len(dataset.classes), **ablation.model_options)
    model = model.to(device, memory_format=torch.channels_last)  # faster convolutions on CPU and CUDA
    opt = PaperSGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    loader = Loader(dataset, config.batch_size, train=True, crop_size=info.input_size, device=device,
                    seed=config.seed, lighting=PAPER_LIGHTING if ablation.lighting else 0.0, indices=train_idx,
                    workers=config.workers, std=info.pixel_std, channels_last=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({
        "experiment": "ablations", "ablation": ablation.name, "change": ablation.change, "arch": config.arch,
        "model_options": ablation.model_options, "lighting": PAPER_LIGHTING if ablation.lighting else 0.0,
        "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr, "momentum": config.momentum,
        "weight_decay": config.weight_decay, "seed": config.seed, "train_images": int(len(train_idx)),
        "data": str(getattr(dataset, "path", "")),
        # where the validation images are, in alexnet train's terms (read by alexnet report)
        "val": val, "val_split": None if val else config.val_fraction,
    }, indent=1) + "\n")
    rows = []
    start = time.perf_counter()
    err = float("nan")
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        wrong1 = torch.zeros((), dtype=torch.int64, device=device)
        wrong5 = torch.zeros((), dtype=torch.int64, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        n = 0
        for x, y in loader:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            top = logits.detach().topk(min(5, logits.shape[1]), dim=1).indices
            wrong1 += (top[:, 0] != y).sum()
            wrong5 += (~(top == y[:, None]).any(1)).sum()
            loss_sum += loss.detach().double() * len(y)
            n += len(y)
        secs = time.perf_counter() - t0
        err = 100.0 * int(wrong1) / max(n, 1)
        rows.append({"epoch": epoch + 1, "train_loss": float(loss_sum) / max(n, 1),
                     "train_top1_err": int(wrong1) / max(n, 1), "train_top5_err": int(wrong5) / max(n, 1),
                     "val_top1_err": "", "val_top5_err": "", "lr": config.lr,
                     "images_per_s": round(n / secs, 2) if secs > 0 else "", "seconds": round(secs, 2)})
        log(f"{ablation.name} epoch {epoch + 1}/{config.epochs}: running train error {err:.1f}%, "
            f"loss {rows[-1]['train_loss']:.3f} ({secs:.0f} s, {n / max(secs, 1e-9):.1f} img/s)")
    _write_metrics(run_dir / "metrics.csv", rows)
    save_weights(run_dir / "weights.safetensors", model, arch=config.arch, model_options=ablation.model_options,
                 classes=list(dataset.classes),
                 preprocess={"resize": int(dataset.size), "crop_size": info.input_size, "mean": "image",
                             "std_rgb": None if info.pixel_std is None else list(info.pixel_std)},
                 mean_image=np.asarray(dataset.mean_image, np.float32))
    return err, time.perf_counter() - start


def _write_metrics(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def evaluate_one(run_dir: Path, dataset, val_idx: np.ndarray, config: AblationConfig, device: torch.device,
                 ) -> tuple[float, float, float | None, float | None, float]:
    """(top-1, top-5 centre crop, top-1, top-5 10 crops, seconds) in percent, from the saved weights."""
    import alexnet
    from alexnet.evaluation import evaluate

    t0 = time.perf_counter()
    model = alexnet.load(run_dir / "weights.safetensors", device=device, progress=False)
    one = evaluate(model, dataset, crops=1, indices=val_idx, batch_size=config.eval_batch_size, progress=False)
    ten = (evaluate(model, dataset, crops=10, indices=val_idx, batch_size=max(1, config.eval_batch_size // 8),
                    progress=False) if config.ten_crop else None)
    # the centre-crop validation error goes into the last row of metrics.csv, for the run's report
    metrics = run_dir / "metrics.csv"
    with metrics.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows[-1]["val_top1_err"], rows[-1]["val_top5_err"] = f"{one.top1_error:.6f}", f"{one.top5_error:.6f}"
    _write_metrics(metrics, rows)
    return (100 * one.top1_error, 100 * one.top5_error, None if ten is None else 100 * ten.top1_error,
            None if ten is None else 100 * ten.top5_error, time.perf_counter() - t0)


def run_ablations(data: str | os.PathLike, config: AblationConfig, *, val: str | os.PathLike | None = None,
                  out_dir: str | os.PathLike = "runs/ablations", resume: bool = False,
                  log: Callable[[str], None] | None = _log) -> AblationTable:
    """Train and evaluate the full model and each ablation; write ``ablations.md`` / ``ablations.json``
    and one run directory per model under ``out_dir``."""
    from alexnet.data import PreparedDataset, split_indices

    config.validate()
    log = log or (lambda _m: None)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_ds = PreparedDataset(data)
    if val is not None:
        val_ds = PreparedDataset(val)
        if [c.get("wnid") for c in val_ds.classes] != [c.get("wnid") for c in train_ds.classes]:
            raise UserError(f"{val} has other classes than {data}")
        train_idx, val_idx = np.arange(len(train_ds)), np.arange(len(val_ds))
    else:
        val_ds = train_ds
        train_idx, val_idx = split_indices(len(train_ds), config.val_fraction, config.seed)
    labels = np.asarray(train_ds.labels, np.int64)
    if config.train_subset is not None and config.train_subset < len(train_idx):
        train_idx = _stratified(labels, train_idx, config.train_subset, config.seed)
    if config.val_subset is not None and config.val_subset < len(val_idx):
        val_idx = _stratified(np.asarray(val_ds.labels, np.int64), val_idx, config.val_subset, config.seed)
    if len(train_idx) < config.batch_size:
        raise UserError(f"{len(train_idx)} training images are fewer than one batch of {config.batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = AblationTable(config, {}, int(len(train_idx)), int(len(val_idx)), str(data), str(val or ""))
    log(f"ablations {', '.join(config.names)}: {len(train_idx)} training / {len(val_idx)} validation images, "
        f"{config.epochs} epoch(s) each, on {device}")
    for name in config.names:
        run_dir = out / name
        done = run_dir / "result.json"
        if resume and done.is_file():
            table.results[name] = AblationResult(**json.loads(done.read_text()))
            log(f"{name}: already done, skipped")
            continue
        train_err, train_s = train_one(ABLATIONS[name], train_ds, train_idx, config, run_dir, device, log,
                                       val=str(val) if val is not None else None)
        t1, t5, t1_10, t5_10, eval_s = evaluate_one(run_dir, val_ds, val_idx, config, device)
        res = AblationResult(name, t1, t5, t1_10, t5_10, train_err, int(len(val_idx)), train_s, eval_s)
        done.write_text(json.dumps(asdict(res), indent=1) + "\n")
        table.results[name] = res
        log(f"{name}: top-1/top-5 error {t1:.1f}/{t5:.1f}% (1 crop)"
            + (f", {t1_10:.1f}/{t5_10:.1f}% (10 crops)" if t1_10 is not None else "")
            + f"; train {train_s / 60:.1f} min, eval {eval_s / 60:.1f} min")
        _write_table(table, out)
    _write_table(table, out)
    return table


def _write_table(table: AblationTable, out: Path) -> None:
    (out / "ablations.md").write_text(table.markdown() + "\n")
    (out / "ablations.json").write_text(json.dumps(table.to_dict(), indent=1) + "\n")


