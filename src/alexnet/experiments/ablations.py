"""The paper's ablations: the full model against each of its switches, same budget, same seed.

Sections 3.3-4.2 of the paper report what each ingredient is worth in top-1/top-5 error (docs/PAPER.md, "Results to compare with"):

| switch            | model / data change                                       | paper's change when removed |
|-------------------|-----------------------------------------------------------|-----------------------------|
| ``no_lrn``        | ``lrn=False``                                             | +1.4 / +1.2                 |
| ``no_overlap``    | ``overlap_pool=False`` (2x2 stride-2 pooling)             | +0.4 / +0.3                 |
| ``one_tower``     | ``towers=1`` (one net with half the kernels in conv1-4)   | +1.7 / +1.2                 |
| ``no_lighting``   | PCA lighting off (alphas ~ N(0, 0) instead of N(0, 0.1))  | over +1 top-1               |
| ``no_dropout``    | ``dropout=0``                                             | not given ("substantial overfitting") |

Every model here trains from the same seed (same data order and augmentation draws; initial weights
drawn from the same generator state) for the same number of epochs with the paper's recipe, through the
project's trainer (:func:`alexnet.training.train`): the paper's SGD update, momentum 0.9, weight decay
5e-4, batch 128, learning rate 0.01 divided by 10 when the validation error stops improving (plateau,
at most 3 times), random 224 crops + mirrors + PCA lighting from the data's own PCA; checkpoints, DDP
(torchrun) and bf16 autocast on CUDA come with it. Each model is evaluated on the validation images with
the centre crop and with the paper's 10 crops. Each model's run directory is ``alexnet train``'s
(``config.yaml``, ``metrics.csv``, ``weights.safetensors``, ...), so ``alexnet report`` works on it.

A small-scale run (``train_subset`` / ``val_subset``) takes stratified subsets of the images into memory
(:class:`~alexnet.data.ArrayDataset`) with the statistics (mean image, PCA) of the whole training set.

Resuming: ``ablations.json`` records the settings (written before the first model trains). ``resume=True``
keeps the models whose ``result.json`` is there, continues an interrupted one from its checkpoint and
trains the rest; it refuses, in one line naming the flags, a folder made with other settings
(:data:`RESUME_SETTINGS`, the data), so that a resume never mixes budgets in one table.
:func:`resume_settings` does that check before any data is opened, and fills in the settings not given
from the earlier run.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alexnet.errors import BadOptionError, UserError
from alexnet.experiments.resuming import refusal, same_path
from alexnet.files import write_atomic


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
RECORD_FILE = "ablations.json"  # the run's settings and table
RESULT_FILE = "result.json"  # in each model's run directory: its errors, once trained and evaluated
CHECKPOINT_FILE = "last.pt"  # the trainer's (alexnet.training.rundir.LAST): an interrupted model's state

# The settings --resume holds to ablations.json's: those that change what is computed. Not the device,
# the loader's workers or the evaluation batch (the same computation), and not ``only`` (which models:
# each is kept or trained on its own).
RESUME_SETTINGS = ("epochs", "arch", "batch_size", "lr", "momentum", "weight_decay", "seed", "ten_crop",
                   "val_fraction", "train_subset", "val_subset")


@dataclass
class AblationConfig:
    """The budget every model of an ablation run gets (the same for all)."""

    epochs: int
    """Epochs for every model (the same budget)."""
    arch: str = "alexnet"
    """The model to ablate (the paper's)."""
    batch_size: int = 128
    """Global batch (the paper's 128)."""
    lr: float = 0.01
    """Initial learning rate (the paper's), divided by 10 when the validation error stops improving."""
    momentum: float = 0.9
    """Momentum of the paper's update."""
    weight_decay: float = 5e-4
    """Weight decay of the paper's update."""
    seed: int = 0
    """Seed of every model's initialisation, data order, augmentation and validation split."""
    device: str = "auto"
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    workers: int | None = None
    """Loader threads; None: the CPUs this process may use."""
    ten_crop: bool = True
    """Also evaluate with the paper's 10 crops (4 corners + centre, and their reflections)."""
    val_fraction: float = 0.1
    """Fraction of the training data held out for validation when no validation set is given."""
    train_subset: int | None = None
    """Train on a stratified subset of about this many training images: N // classes of each class (a
    small-scale run); None: all."""
    val_subset: int | None = None
    """Evaluate on a stratified subset of about this many validation images: N // classes of each class
    (at least one); None: all."""
    only: list[str] | None = None
    """Run only these of full, no_lrn, no_overlap, one_tower, no_lighting, no_dropout (full is always run:
    the differences need it); None: all."""
    eval_batch_size: int = 64
    """Images per evaluation batch (x10 with 10 crops)."""

    def validate(self) -> None:
        from alexnet.training.config import check_field_types

        check_field_types(self, label=lambda name: name.replace("_", " "))  # types first: a Python caller's
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
        from alexnet.training.config import check_seed  # one seed rule for every command

        check_seed(self.seed)
        # Every variant's model options, before anything trains (an --arch without one of the switches would
        # otherwise fail after the models before it): built on the meta device, no memory and no init.
        import torch

        from alexnet.models import create_model

        for name in self.names:
            with torch.device("meta"):
                try:
                    create_model(self.arch, num_classes=2, **ABLATIONS[name].model_options)
                except BadOptionError as e:
                    raise BadOptionError(f"ablation {name} cannot be made with --arch {self.arch}: {e}") from None

    @property
    def names(self) -> list[str]:
        names = list(self.only) if self.only else list(ABLATIONS)
        if "full" not in names:  # differences need the reference
            names.insert(0, "full")
        return [n for n in ABLATIONS if n in names]


@dataclass
class AblationResult:
    """One model's errors, as fractions (0..1)."""

    name: str
    top1: float  # centre crop
    top5: float
    top1_10: float | None  # 10 crops
    top5_10: float | None
    train_error: float  # running top-1 error over the last epoch
    images: int
    train_seconds: float
    eval_seconds: float

    @classmethod
    def from_json(cls, text: str) -> AblationResult:
        """Back from its ``result.json``; one written before errors were fractions held percents (a top-1
        error above 1), read as such."""
        d = json.loads(text)
        if d["top1"] > 1:
            d.update({k: d[k] / 100 for k in ("top1", "top5", "top1_10", "top5_10", "train_error")
                      if d[k] is not None})
        return cls(**d)


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
        for name in [n for n in ABLATIONS if n in self.results]:  # the registry's order, however they ran
            r, a = self.results[name], ABLATIONS[name]

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
        """The paper's form: each model's top-1/top-5 error (in percent), its difference to the full model
        and the difference the paper reports beside it (in percentage points)."""
        c = self.config

        def pct(v):
            return "-" if v is None else f"{100 * v:.2f}%"

        def pp(v):
            return f"{100 * v:+.2f}"

        def delta(a, b):
            if a is None:
                return "-" if b is None else pp(b)
            return f"{pp(a)} / {pp(b)}" if b is not None else pp(a)

        ten = c.ten_crop
        head = ["model", "change", "top-1 (1 crop)", "top-5 (1 crop)"]
        if ten:
            head += ["top-1 (10 crops)", "top-5 (10 crops)"]
        head += ["Δ vs full, 1 crop (pp)", *(["Δ vs full, 10 crops (pp)"] if ten else []), "paper's Δ (pp)",
                 "train err (last epoch)"]
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
        lines.append(f"Errors on {self.val_images} validation images; Δ = model minus full model in percentage "
                     f"points (pp), top-1 / top-5; positive = the switch hurts. Budget per model: "
                     f"{c.epochs} epoch(s) on {self.train_images} training images, batch {c.batch_size}, "
                     f"lr {c.lr:g} (paper's plateau schedule) {self._warmup_words()} "
                     f"(the default recipe's; docs/RECIPE.md), seed {c.seed}.")
        return "\n".join(lines)

    def _warmup_words(self) -> str:
        warm = self.warmup_steps()
        total = self.config.epochs * max(1, self.train_images // self.config.batch_size)
        if warm >= total:
            return (f"reached only by the end of a linear warm-up of {warm} steps, longer than the {total} "
                    "steps trained: the lr stayed below it")
        return f"after {warm} steps of linear warm-up"

    def warmup_steps(self) -> int:
        """The warm-up each model had: the default recipe's for this many images and batch."""
        from alexnet.training import TrainConfig
        from alexnet.training.config import warmup_steps

        return warmup_steps(TrainConfig(), max(1, self.train_images // self.config.batch_size))

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "train_images": self.train_images, "val_images": self.val_images,
                "data": self.data, "val": self.val, "rows": self.rows()}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped a model's training (the trainer saved its checkpoint): ``resume=True``
    continues it. A KeyboardInterrupt, as the signal was."""

    def __init__(self, model: str, signal: str) -> None:
        super().__init__(f"{model}: training interrupted ({signal}); its checkpoint is saved")
        self.model, self.signal = model, signal


def setting_flags(name: str, value) -> list[str]:
    """A setting as ``alexnet experiment ablations`` takes it: ``["--epochs", "12"]``, ``["--no-ten-crop"]``,
    ``[]`` for no ``val`` or no subset (no flag)."""
    from alexnet.cli.config_args import flag_words

    if value is None or (name == "val" and not value):
        return []
    return flag_words(name, value)


def _spelled(settings: list[tuple[str, object]]) -> str:
    """``--epochs 12 --val v``; ``no --val``, ``no --train-subset`` for a flag not given."""
    words = [shlex.join(setting_flags(k, v)) or ("no --val" if k == "val" else f"no --{k.replace('_', '-')}")
             for k, v in settings]
    return " ".join(words)


@dataclass
class ResumeSettings:
    """What ``--resume`` continues: the earlier run's settings, the flags given (which agree with them)
    in their place."""

    path: Path
    """The earlier run's ``ablations.json``."""
    values: dict
    """:class:`AblationConfig` fields: those given, and the earlier run's for the results' settings (and
    ``only``) not given."""
    val: str | None
    """The validation set: given, or the earlier run's."""
    data: str | None = None
    """The training set: given, or the earlier run's (None: it recorded none)."""
    taken: list[str] = field(default_factory=list)
    """The settings taken from ``path`` that are not the defaults (to say so)."""

    def describe(self) -> str:
        taken = _spelled([(k, {"val": self.val, "data": self.data}.get(k) if k in ("val", "data") else self.values[k])
                          for k in self.taken])
        return f"resuming {self.path}" + (f" with its settings {taken}" if taken else "")


def _model_runs(out: Path) -> list[str]:
    """The models that have a run directory with a checkpoint or a result in ``out``."""
    return [n for n in ABLATIONS if (out / n / RESULT_FILE).exists() or (out / n / CHECKPOINT_FILE).exists()]


def resume_settings(out_dir: str | os.PathLike, given: dict, *, data: str | os.PathLike | None = None,
                    val: str | os.PathLike | None = None) -> ResumeSettings | None:
    """The settings that continue the ablations in ``out_dir`` (None when it holds no run at all): the
    :class:`AblationConfig` fields in ``given`` (the flags given), the earlier run's for the results'
    settings (and ``only``) not given; ``val`` likewise. A setting given that differs from the earlier
    run's, or other ``data``, is refused in one line naming the flags to repeat. Checked before any data
    is opened, so a resume with a wrong flag costs nothing."""
    out = Path(out_dir)
    path = out / RECORD_FILE
    if not path.is_file():
        runs = _model_runs(out)
        if runs:  # an older version wrote ablations.json only after the first model
            raise UserError(f"{out} holds runs of {', '.join(runs)} but no {RECORD_FILE} saying with which settings: "
                            "nothing to check a resume against; choose another --out")
        return None
    try:
        record = json.loads(path.read_text())
        saved = {**asdict(AblationConfig(epochs=1)), **record["config"]}
        saved_data, saved_val = str(record.get("data") or ""), str(record.get("val") or "")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path} is not a readable record of ablations ({type(e).__name__}: {e}): nothing to "
                        "resume from; drop --resume to start over in a new --out") from None
    defaults = asdict(AblationConfig(epochs=1))
    values, taken, differ = dict(given), [], []
    if data is None:  # not given: the earlier run's
        data = saved_data or None
        if data:
            taken.append("data")
    elif not same_path(saved_data, str(data)):
        differ.append(("data", saved_data, str(data)))
    if val is None:  # not given: the earlier run's
        val = saved_val or None
        if val:
            taken.append("val")
    elif bool(str(val)) != bool(saved_val) or not same_path(saved_val, str(val)):  # "": none (held out)
        differ.append(("val", saved_val, str(val)))
    for name in (*RESUME_SETTINGS, "only"):
        if name not in given or (name == "only" and given[name] is None):  # only None: all, as before
            values[name] = saved[name]
            if saved[name] != defaults[name]:
                taken.append(name)
        elif name != "only" and given[name] != saved[name]:
            differ.append((name, saved[name], given[name]))
    if differ:
        raise refusal(path, differ, _spelled)
    return ResumeSettings(path, values, str(val) if val else None, str(data) if data else None, taken)


def _stratified(labels: np.ndarray, indices: np.ndarray, count: int, seed: int) -> np.ndarray:
    """About ``count`` of ``indices``, the same number from each class (as far as they go)."""
    from alexnet.experiments.images import stratified_subset

    classes = np.unique(labels[indices])
    per_class = max(1, count // max(len(classes), 1))
    chosen = stratified_subset(labels[indices], per_class, seed)
    return np.sort(indices[chosen])


def _subset(dataset, indices: np.ndarray, stats_from=None):
    """An in-memory :class:`~alexnet.data.ArrayDataset` of ``indices`` of a prepared dataset, with the
    statistics (mean image, PCA) of ``stats_from`` (default: the whole dataset), not of the subset."""
    from alexnet.data import ArrayDataset

    src = stats_from if stats_from is not None else dataset
    stats = {"mean_image": src.mean_image, "mean_rgb": src.mean_rgb, "std_rgb": src.std_rgb,
             "pca_eigval": src.pca_eigval, "pca_eigvec": src.pca_eigvec}
    images = np.stack([np.asarray(dataset.get_uint8(int(i)), dtype=np.uint8) for i in indices])
    return ArrayDataset(images, np.asarray(dataset.labels, np.int64)[indices], list(dataset.classes), stats=stats)


def train_config(ablation: Ablation, config: AblationConfig, *, data: str, val: str | None, run_dir: Path):
    """The :class:`~alexnet.training.TrainConfig` of one model: the paper's recipe, the ablation's switch."""
    from alexnet.training import TrainConfig

    return TrainConfig(
        arch=config.arch, model_options=dict(ablation.model_options), data=data, val=val,
        val_split=0.0 if val else config.val_fraction,
        lighting=PAPER_LIGHTING if ablation.lighting else 0.0, epochs=config.epochs,
        batch_size=config.batch_size, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
        ten_crop=config.ten_crop, seed=config.seed, workers=config.workers,
        device=config.device or "auto", out=str(run_dir), name=ablation.name)


def train_and_evaluate(ablation: Ablation, config: AblationConfig, *, data: str, val: str | None, run_dir: Path,
                       val_images: int, train_ds=None, val_ds=None, progress: bool = True,
                       resume: bool = False) -> AblationResult:
    """Train one model with :func:`alexnet.training.train` into ``run_dir`` and read its final errors;
    ``resume``: continue the interrupted training in ``run_dir`` from its checkpoint instead
    (:func:`alexnet.training.resume`, its own config; the loader's workers and the device may differ).

    ``train_ds`` / ``val_ds``: in-memory subsets for a small-scale run (else the trainer opens ``data``
    and ``val``, or holds out ``val_fraction`` of ``data`` with the seed). SIGINT/SIGTERM during the
    training raise :class:`TrainingInterrupted` once the trainer has saved its checkpoint."""
    import torch

    import alexnet.training

    # Each model compiles its own graphs (on a GPU); the earlier models' would count towards dynamo's
    # recompile limit (8) and leave the last ablations running uncompiled. No model reuses another's.
    torch._dynamo.reset()
    t0 = time.perf_counter()
    if resume:
        same_computation = {"device": config.device or "auto", "workers": config.workers}
        res = alexnet.training.resume(run_dir, dataset=train_ds, val_dataset=val_ds, progress=progress,
                                      resume_hint=False, **{k: v for k, v in same_computation.items() if v is not None})
    else:
        tc = train_config(ablation, config, data=data, val=val, run_dir=run_dir)
        res = alexnet.training.train(tc, dataset=train_ds, val_dataset=val_ds, progress=progress,
                                     resume_hint=False)  # the experiment says how to continue it
    seconds = time.perf_counter() - t0
    if res.interrupted:
        raise TrainingInterrupted(ablation.name, res.interrupted)
    f = res.final

    def err(key):
        v = f.get(key)
        return None if v is None else float(v)

    if f.get("val_top1_err") is None:
        raise UserError("the ablations need validation images (give --val or a --val-fraction above 0)")
    last = res.history[-1] if res.history else {}
    return AblationResult(ablation.name, err("val_top1_err"), err("val_top5_err"), err("ten_crop_top1_err"),
                          err("ten_crop_top5_err"), float(last.get("train_top1_err", float("nan"))),
                          int(val_images), seconds, 0.0)


def run_ablations(data: str | os.PathLike, config: AblationConfig, *, val: str | os.PathLike | None = None,
                  out_dir: str | os.PathLike = "runs/ablations", resume: bool = False,
                  log: Callable[[str], None] | None = _log, progress: bool = True) -> AblationTable:
    """Train and evaluate the full model and each ablation; write ``ablations.md`` / ``ablations.json``
    and one run directory per model (``alexnet train``'s layout) under ``out_dir``.

    An ``out_dir`` that already holds a run is refused unless ``resume``. With ``resume``: the models with
    a ``result.json`` are kept, an interrupted one continues from its checkpoint, the others train; a run
    made with other settings or data is refused in one line (:func:`resume_settings`) before anything
    trains; with none there, the run starts from the beginning (and says so)."""
    from alexnet.data import PreparedDataset, split_indices

    config.validate()
    log = log or (lambda _m: None)
    out = Path(out_dir)
    record = None
    if resume:
        record = resume_settings(out, asdict(config), data=data, val=str(val or ""))  # raises if they differ
        if record is None:
            log(f"note: {out} holds no {RECORD_FILE} to resume from: starting from the beginning")
    elif (out / RECORD_FILE).exists() or _model_runs(out):
        raise UserError(f"{out} already holds a run of the ablations ({RECORD_FILE} or a model's run directory): "
                        "continue it with --resume, or choose another --out")
    train_full = PreparedDataset(data)
    val_full = PreparedDataset(val) if val is not None else None
    if val_full is not None and [c.get("wnid") for c in val_full.classes] != [c.get("wnid") for c in train_full.classes]:
        raise UserError(f"{val} has other classes than {data}")
    if val_full is not None:
        train_idx, val_idx = np.arange(len(train_full)), np.arange(len(val_full))
    else:
        train_idx, val_idx = split_indices(len(train_full), config.val_fraction, config.seed)
    n_train, n_val = len(train_idx), len(val_idx)
    train_ds = val_ds = None
    if config.train_subset is not None or config.val_subset is not None:
        # A small-scale run: stratified subsets held in memory, with the whole training set's statistics.
        labels = np.asarray(train_full.labels, np.int64)
        if config.train_subset is not None and config.train_subset < len(train_idx):
            train_idx = _stratified(labels, train_idx, config.train_subset, config.seed)
        vsrc = val_full if val_full is not None else train_full
        if config.val_subset is not None and config.val_subset < len(val_idx):
            val_idx = _stratified(np.asarray(vsrc.labels, np.int64), val_idx, config.val_subset, config.seed)
        n_train, n_val = len(train_idx), len(val_idx)
        if n_train >= config.batch_size:
            train_ds = _subset(train_full, train_idx)
            val_ds = _subset(vsrc, val_idx, stats_from=train_full)
    if n_train < config.batch_size:
        raise UserError(f"{n_train} training images are fewer than one batch of {config.batch_size}")
    if record is not None:  # the same flags, but the data's images changed (or an older record)
        earlier = json.loads(record.path.read_text())
        was = (earlier.get("train_images"), earlier.get("val_images"))
        if was != (n_train, n_val):
            raise UserError(f"{record.path} was made with {was[0]} training / {was[1]} validation images, now "
                            f"{n_train} / {n_val}: the data changed; drop --resume to start over in a new --out")
    out.mkdir(parents=True, exist_ok=True)
    # The data's paths as absolute ones: what a resume from another folder compares.
    table = AblationTable(config, {}, int(n_train), int(n_val), str(Path(data).resolve()),
                          str(Path(val).resolve()) if val else "")
    if record is None:  # the settings on disk before the first model trains: what a resume is checked against
        _write_table(table, out)
    log(f"ablations {', '.join(config.names)}: {n_train} training / {n_val} validation images, "
        f"{config.epochs} epoch(s) each")
    if resume:  # models an earlier --only finished stay in the table
        for name in ABLATIONS:
            if name not in config.names and (out / name / RESULT_FILE).is_file():
                table.results[name] = AblationResult.from_json((out / name / RESULT_FILE).read_text())
                log(f"{name}: done by an earlier run, kept in the table")
    for name in config.names:
        run_dir = out / name
        done = run_dir / RESULT_FILE
        if resume and done.is_file():
            table.results[name] = AblationResult.from_json(done.read_text())
            log(f"{name}: already done, skipped")
            continue
        interrupted = resume and (run_dir / CHECKPOINT_FILE).exists()
        if interrupted:
            log(f"{name}: continuing its training from {run_dir / CHECKPOINT_FILE}")
        res = train_and_evaluate(ABLATIONS[name], config, data=str(data), val=str(val) if val else None,
                                 run_dir=run_dir, val_images=n_val, train_ds=train_ds, val_ds=val_ds,
                                 progress=progress, resume=interrupted)
        write_atomic(done, json.dumps(asdict(res), indent=1) + "\n")
        table.results[name] = res
        log(f"{name}: top-1/top-5 error {100 * res.top1:.2f}%/{100 * res.top5:.2f}% (1 crop)"
            + (f", {100 * res.top1_10:.2f}%/{100 * res.top5_10:.2f}% (10 crops)" if res.top1_10 is not None else "")
            + f"; {res.train_seconds / 60:.1f} min")
        _write_table(table, out)
    _write_table(table, out)
    return table


def _write_table(table: AblationTable, out: Path) -> None:
    # atomic: an interrupt mid-write leaves the last whole record (what --resume reads), not half of one
    write_atomic(out / "ablations.md", table.markdown() + "\n")
    write_atomic(out / RECORD_FILE, json.dumps(table.to_dict(), indent=1) + "\n")


