"""The paper's Figure 1: a four-layer CNN on CIFAR-10 reaches 25% training error about six times sooner
(in epochs) with ReLUs than with tanh units.

What the paper says (section 3.1): "the learning rates for each network were chosen independently to
make training as fast as possible. No regularization of any kind was employed." It plots training error
against epochs. What we do, and why:

- Net: ``cifar_4layer`` (cuda-convnet's layers-18pct, docs/PAPER.md) with ``activation="relu"`` or ``"tanh"``,
  the same initial weights for both (same seed); LRN kept, since it is part of that net.
- No regularisation: no weight decay, no dropout (the net has none), no augmentation: the plain 32x32
  images minus the training set's mean image (cuda-convnet's preprocessing), no flips, no crops, no
  lighting.
- Optimiser: the paper's update (:class:`~alexnet.training.optim.PaperSGD`), momentum 0.9, weight decay
  0, batch 128, a constant learning rate.
- "Learning rates chosen independently": a small sweep per activation. Every learning rate in ``lrs``
  trains ``sweep_epochs`` epochs from the same initial weights; the one with the lowest training error
  after them wins and simply *continues* (its first epochs are the sweep's; running it again from the
  same seed would repeat them), until the training error reaches ``target_error`` or ``max_epochs``.
- Training error: the running error over each epoch (the fraction of the epoch's training images
  misclassified by the network *as it was when it saw them*, in train mode), which is what a training
  curve like the paper's plots and costs no extra pass. ``epochs_to_target`` is the first whole epoch
  whose running error is at or below the target (how one reads the figure); ``crossing`` interpolates
  linearly between epochs for a finer estimate.

The loop here is deliberately lean (in-memory uint8 images, one mean subtraction per batch, no
checkpoints): the full trainer (``alexnet.training``) brings a run directory, schedules and validation
that this experiment does not use, and each epoch of the tanh net is already minutes on a small CPU.

Resuming: ``result.json`` records the settings (and ``per_class``, the data's path). ``resume=True``
keeps the activations it holds finished and trains the others from scratch; it refuses, in one line
naming the flags, a result made with other settings (:data:`RESUME_SETTINGS`, the data, its subset), so
that a resume never silently redoes or overwrites finished work. :func:`resume_settings` does that check
before any image is read, and fills in the settings not given from the earlier run.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from alexnet import runtime
from alexnet.errors import BadOptionError, UserError
from alexnet.experiments.resuming import refusal, same_path
from alexnet.files import write_atomic
from alexnet.models import create_model
from alexnet.progress import count
from alexnet.training.config import check_seed
from alexnet.training.optim import PaperSGD

ACTIVATIONS = ("relu", "tanh")
RESULT_FILE = "result.json"

# The settings --resume holds to result.json's: those that change what is computed. Not the device (the
# same computation elsewhere), not the activations (each is kept or trained on its own), and max_epochs
# apart: a larger budget keeps the activations that reached the target (their curves would be the same).
RESUME_SETTINGS = ("lrs", "sweep_epochs", "target_error", "batch_size", "momentum", "lrn", "seed")


@dataclass
class ReluTanhConfig:
    """Settings of the Figure 1 experiment (see the module docstring for the choices)."""

    lrs: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03)
    """Learning rates swept for each activation."""
    sweep_epochs: int = 2
    """Epochs each learning rate trains before the best is chosen."""
    target_error: float = 0.25
    """The running training error to reach (the paper's 25%)."""
    max_epochs: int = 40
    """Give up on an activation after this many epochs (its ratio is then a lower bound)."""
    batch_size: int = 128
    """Images per step (the paper's 128)."""
    momentum: float = 0.9
    """Momentum of the paper's update."""
    lrn: bool = True
    """Keep the net's local response normalisation layers."""
    seed: int = 0
    """Seed of the initial weights (the same for every rate and both activations) and the data order."""
    activations: tuple[str, ...] = ACTIVATIONS
    """The activations trained, in order."""
    device: str = "auto"
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""

    def validate(self) -> None:
        from alexnet.training.config import check_field_types

        check_field_types(self, label=lambda name: name.replace("_", " "))  # types first: a Python caller's
        if not self.lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in self.lrs):
            raise BadOptionError(f"learning rates must be positive finite numbers, got {list(self.lrs)}")
        if self.sweep_epochs < 1:
            raise BadOptionError(f"sweep_epochs must be at least 1, got {self.sweep_epochs}")
        if self.max_epochs < self.sweep_epochs:
            raise BadOptionError(f"max_epochs ({self.max_epochs}) must be at least sweep_epochs ({self.sweep_epochs})")
        if not 0 < self.target_error < 1:
            raise BadOptionError(f"target error must be between 0 and 1, got {self.target_error}")
        if self.batch_size < 1:
            raise BadOptionError(f"batch size must be at least 1, got {self.batch_size}")
        check_seed(self.seed)
        bad = [a for a in self.activations if a not in ACTIVATIONS]
        if bad or not self.activations:
            raise BadOptionError(f"activations must be among {', '.join(ACTIVATIONS)}, got {list(self.activations)}")


@dataclass
class ActivationResult:
    """One activation's sweep and its training curve (errors are fractions 0..1)."""

    activation: str
    lr: float
    sweep: dict[str, list[float]] = field(default_factory=dict)  # str(lr) -> running error per epoch
    curve: list[float] = field(default_factory=list)  # running training error per epoch (chosen lr)
    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # per epoch, chosen lr
    epochs_to_target: int | None = None
    crossing: float | None = None  # fractional epoch, interpolated

    @property
    def reached(self) -> bool:
        return self.epochs_to_target is not None


@dataclass
class ReluTanhResult:
    config: ReluTanhConfig
    images: int
    results: dict[str, ActivationResult]
    wall_seconds: float = 0.0
    data: str = ""
    per_class: int | None = None
    """The stratified images per class the CLI read (None: all of ``data``)."""

    @property
    def ratio(self) -> float | None:
        """tanh's epochs to the target over ReLU's (None when either is missing or ReLU never got there)."""
        r, t = self.results.get("relu"), self.results.get("tanh")
        if r is None or t is None or not r.reached:
            return None
        return (t.epochs_to_target if t.reached else len(t.curve)) / r.epochs_to_target

    @property
    def ratio_is_lower_bound(self) -> bool:
        t = self.results.get("tanh")
        return t is not None and not t.reached

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "images": self.images, "data": self.data, "per_class": self.per_class,
                "wall_seconds": round(self.wall_seconds, 1), "ratio": self.ratio,
                "ratio_is_lower_bound": self.ratio_is_lower_bound,
                "results": {k: {**asdict(v)} for k, v in self.results.items()}}

    def summary(self) -> str:
        """A few lines for the terminal and the README."""
        c = self.config
        lines = [f"Figure 1 (ReLU vs tanh), cifar_4layer, {self.images} training images, batch {c.batch_size}, "
                 f"target {100 * c.target_error:g}% running training error"]
        for a, r in self.results.items():
            sweep = ", ".join(f"{lr}: {100 * errs[-1]:.2f}%" for lr, errs in r.sweep.items())
            got = (f"{count(r.epochs_to_target, 'epoch')} (interpolated {r.crossing:.2f})" if r.reached
                   else f"not reached in {count(len(r.curve), 'epoch')} (last {100 * r.curve[-1]:.2f}%)")
            lines.append(f"  {a:4s}: lr {r.lr:g} (sweep after {count(c.sweep_epochs, 'epoch')}: {sweep}); "
                         f"{100 * c.target_error:g}% reached: {got}")
        ratio = self.ratio
        if ratio is not None:
            lines.append(f"  ratio tanh/relu: {'>= ' if self.ratio_is_lower_bound else ''}{ratio:.2f}x "
                         f"(paper: about 6x)")
        rows = self.threshold_table()
        if rows:
            lines.append("  epochs to reach each training error (first whole epoch at or below it):")
            for t, e_r, e_t, q in rows:
                fmt = lambda e: "-" if e is None else str(e)  # noqa: E731
                lines.append(f"    {100 * t:4.0f}%: relu {fmt(e_r):>3s}, tanh {fmt(e_t):>3s}"
                             + (f", ratio {q:.2f}" if q is not None else ""))
        lines.append(f"  wall time {self.wall_seconds / 60:.1f} min")
        return "\n".join(lines)

    def threshold_table(self, thresholds: Sequence[float] = (0.5, 0.4, 0.3, 0.25)) -> list[tuple]:
        """(threshold, relu epochs, tanh epochs, ratio) for several training errors, read off the same
        curves: how the gap develops on the way down to the target."""
        r, t = self.results.get("relu"), self.results.get("tanh")
        if r is None or t is None:
            return []
        rows = []
        for th in thresholds:
            er, et = crossing_epoch(r.curve, th)[0], crossing_epoch(t.curve, th)[0]
            rows.append((th, er, et, et / er if er and et else None))
        return rows


def crossing_epoch(curve: Sequence[float], target: float) -> tuple[int | None, float | None]:
    """(first whole epoch with error <= target, the fractional epoch where the curve crosses it).

    Epoch k (1-based) is the error measured over epoch k; the curve starts at (0, ``curve[0]``)'s left,
    so a crossing during epoch 1 is reported as 1.0 for the fraction."""
    for k, e in enumerate(curve, start=1):
        if e <= target:
            if k == 1:
                return 1, 1.0
            prev = curve[k - 2]
            frac = (prev - target) / (prev - e) if prev != e else 1.0
            return k, (k - 1) + frac
    return None, None


class _Batches:
    """Shuffled batches of mean-subtracted float images from a uint8 (N, H, W, 3) array, on ``device``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, device: torch.device,
                 seed: int) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(images)).to(device)  # (N, H, W, 3) uint8
        self.y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        # cuda-convnet's preprocessing: minus the training set's mean image, pixels stay in 0..255 units.
        self.mean = self.x.double().mean(0).float().permute(2, 0, 1).contiguous()  # (3, H, W)
        self.batch_size, self.device = batch_size, device
        self.gen = torch.Generator().manual_seed(seed)
        self.channels_last = True  # faster convolutions on CPU (oneDNN) and on CUDA

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.gen).to(self.device)
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            x = self.x[idx].permute(0, 3, 1, 2).float() - self.mean  # (B, 3, H, W)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.y[idx]


def train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: _Batches) -> tuple[float, float]:
    """One epoch; returns (running training error, mean loss). Counts stay on the device until the end."""
    model.train()
    wrong = torch.zeros((), dtype=torch.int64, device=batches.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=batches.device)
    n = 0
    for x, y in batches:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        wrong += (logits.detach().argmax(1) != y).sum()
        loss_sum += loss.detach().double() * len(y)
        n += len(y)
    loss_mean = float(loss_sum) / n
    if not math.isfinite(loss_mean):  # diverged: every later prediction is noise
        return 1.0, loss_mean
    return int(wrong) / n, loss_mean


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_relu_vs_tanh(images: np.ndarray, labels: np.ndarray, config: ReluTanhConfig | None = None, *,
                     out_dir: str | os.PathLike | None = None, log: Callable[[str], None] | None = _log,
                     data_name: str = "", per_class: int | None = None, resume: bool = False) -> ReluTanhResult:
    """Run Figure 1 on uint8 images (N, 32, 32, 3) and integer labels; see the module docstring.

    With ``out_dir`` it writes ``result.json``, ``curves.csv``, ``figure1.png`` and ``summary.txt`` there
    (``result.json`` is rewritten after every epoch, so a long run can be watched); an ``out_dir`` that
    already holds a ``result.json`` is refused unless ``resume``. With ``resume``, an activation that
    ``out_dir/result.json`` already holds finished (target reached, or ``max_epochs`` run) is kept and not
    trained again; the others start from scratch. A ``result.json`` made with other settings, other data
    (``data_name``: its path) or another subset (``per_class``: recorded, as the images' count) is
    refused in one line before anything trains; with none there, the run starts from the beginning (and
    says so).
    """
    config = config or ReluTanhConfig()
    config.validate()
    log = log or (lambda _msg: None)
    device = runtime.resolve_device(config.device)
    num_classes = int(labels.max()) + 1
    out = Path(out_dir) if out_dir is not None else None
    finished: dict[str, ActivationResult] = {}
    if out is not None and resume:
        finished = _finished_activations(out, config, images=len(labels), classes=num_classes, data=data_name,
                                         per_class=per_class, log=log)
    elif out is not None:
        check_fresh_out(out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = ReluTanhResult(config, len(labels), {}, data=data_name, per_class=per_class)

    def save() -> None:
        result.wall_seconds = time.perf_counter() - start
        if out is not None:  # atomic: an interrupt mid-write leaves the last whole file, not half of one
            write_atomic(out / RESULT_FILE, json.dumps(result.to_dict(), indent=1) + "\n")

    for act in config.activations:
        if act in finished:
            result.results[act] = finished[act]
            log(f"{act}: kept from {out / 'result.json'} ({count(len(finished[act].curve), 'epoch')})")
            continue
        candidates = {}
        sweep: dict[str, list[float]] = {}
        for lr in config.lrs:
            torch.manual_seed(config.seed)  # same initial weights for every lr and both activations
            model = create_model("cifar_4layer", num_classes=num_classes, activation=act, lrn=config.lrn)
            model = model.to(device, memory_format=torch.channels_last)
            opt = PaperSGD(model.parameters(), lr=lr, momentum=config.momentum, weight_decay=0.0)
            batches = _Batches(images, labels, config.batch_size, device, config.seed)
            errs, losses, secs = [], [], []
            for epoch in range(1, config.sweep_epochs + 1):
                t0 = time.perf_counter()
                err, loss = train_epoch(model, opt, batches)
                errs.append(err)
                losses.append(loss)
                secs.append(time.perf_counter() - t0)
                log(f"{act} lr {lr:g} epoch {epoch}: running train error {100 * err:.2f}%, "
                    f"loss {loss:.4f} ({secs[-1]:.0f} s)")
                if not math.isfinite(loss):
                    break
            sweep[str(lr)] = errs
            candidates[lr] = (errs[-1] if len(errs) == config.sweep_epochs else 1.0, model, opt, batches,
                              errs, losses, secs)
        # lowest error after the sweep wins; ties go to the smaller learning rate
        best_lr = min(candidates, key=lambda lr: (candidates[lr][0], lr))
        _, model, opt, batches, errs, losses, secs = candidates[best_lr]
        candidates.clear()
        res = ActivationResult(act, best_lr, sweep, list(errs), list(losses), list(secs))
        result.results[act] = res
        log(f"{act}: chose lr {best_lr:g}")
        res.epochs_to_target, res.crossing = crossing_epoch(res.curve, config.target_error)
        while not res.reached and len(res.curve) < config.max_epochs:
            t0 = time.perf_counter()
            err, loss = train_epoch(model, opt, batches)
            res.curve.append(err)
            res.loss.append(loss)
            res.seconds.append(time.perf_counter() - t0)
            log(f"{act} lr {best_lr:g} epoch {len(res.curve)}: running train error {100 * err:.2f}%, "
                f"loss {loss:.4f} ({res.seconds[-1]:.0f} s)")
            res.epochs_to_target, res.crossing = crossing_epoch(res.curve, config.target_error)
            save()
            if not math.isfinite(loss):
                break
        save()
    save()
    if out is not None:
        write_outputs(result, out)
    return result


def setting_flags(name: str, value) -> list[str]:
    """A setting as ``alexnet experiment relu-vs-tanh`` takes it: ``["--max-epochs", "12"]``, ``["--no-lrn"]``,
    ``["--target", "25"]`` (in percent), ``[]`` for ``per_class`` None (all images: no flag)."""
    from alexnet.cli.config_args import flag_words

    if name == "per_class" and value is None:
        return []
    if name == "target_error":
        return ["--target", f"{100 * value:g}"]
    return flag_words(name, value)


def _spelled(settings: list[tuple[str, object]]) -> str:
    """``--per-class 100 --max-epochs 12``; ``all images, --max-epochs 75`` for ``per_class`` None."""
    words = [shlex.join(setting_flags(k, v)) for k, v in settings]
    flags = " ".join(w for w in words if w)
    if all(words):
        return flags
    return "all images" + (f", {flags}" if flags else "")


@dataclass
class ResumeSettings:
    """What ``--resume`` continues: the earlier run's settings, the flags given (which agree with them)
    in their place."""

    path: Path
    """The earlier run's ``result.json``."""
    values: dict
    """:class:`ReluTanhConfig` fields: those given, and the earlier run's for the results' settings not given."""
    per_class: int | None
    data: str | None = None
    """The training images: given, or the earlier run's (None: it recorded none)."""
    taken: list[str] = field(default_factory=list)
    """The settings taken from ``path`` that differ from the defaults (to say so)."""

    def describe(self) -> str:
        taken = _spelled([(k, {"per_class": self.per_class, "data": self.data}.get(k)
                           if k in ("per_class", "data") else self.values[k]) for k in self.taken])
        return f"resuming {self.path}" + (f" with its settings {taken}" if taken else "")


def _read_earlier(path: Path) -> tuple[ReluTanhResult, bool]:
    """The result in ``path`` and whether it records ``per_class`` (one written before did not)."""
    try:
        d = json.loads(path.read_text())
        return result_from_json(path), isinstance(d, dict) and "per_class" in d
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # not JSON, or not a result of this experiment
        raise UserError(f"{path} is not a readable Figure 1 result ({type(e).__name__}: {e}): nothing to resume "
                        "from; drop --resume to start over in a new --out") from None


def check_fresh_out(out: str | os.PathLike) -> None:
    """A second run into the same ``--out`` without --resume is refused (it would overwrite the results)."""
    if (Path(out) / RESULT_FILE).exists():
        raise UserError(f"{out} already holds the results of a run ({RESULT_FILE}): continue it with --resume, "
                        "or choose another --out")


def resume_settings(out_dir: str | os.PathLike, given: dict, *, data: str | os.PathLike | None = None,
                    per_class: int | None = None) -> ResumeSettings | None:
    """The settings that continue the run in ``out_dir`` (None when it holds no ``result.json``): the
    :class:`ReluTanhConfig` fields in ``given`` (the flags given), the earlier run's for the results'
    settings not given. A setting given that differs from the earlier run's (``max_epochs``: that is
    smaller), other ``data`` or another ``per_class`` is refused in one line naming the flags to repeat.
    Checked before the images are read, so a resume with a wrong flag costs nothing."""
    path = Path(out_dir) / RESULT_FILE
    if not path.is_file():
        return None
    earlier, knows_per_class = _read_earlier(path)
    saved, defaults = asdict(earlier.config), asdict(ReluTanhConfig())
    values, taken, differ = dict(given), [], []
    if data is None:  # not given: the earlier run's
        data = earlier.data or None
        if data:
            taken.append("data")
    elif not same_path(earlier.data, str(data)):
        differ.append(("data", earlier.data, str(data)))
    if knows_per_class:
        if per_class is None:
            per_class = earlier.per_class
            if per_class is not None:
                taken.append("per_class")
        elif per_class != earlier.per_class:
            differ.append(("per_class", earlier.per_class, per_class))
    for name in (*RESUME_SETTINGS, "max_epochs"):
        if name not in given:
            values[name] = saved[name]
            if saved[name] != defaults[name]:
                taken.append(name)
        elif not _agrees(name, saved[name], given[name]):
            differ.append((name, saved[name], given[name]))
    if differ:
        raise refusal(path, differ, _spelled)
    return ResumeSettings(path, values, per_class, str(data) if data else None, taken)


def _agrees(name: str, earlier, now) -> bool:
    if name == "max_epochs":  # more epochs: the activations that reached the target stand as they are
        return now >= earlier
    if name == "lrs":
        return tuple(earlier) == tuple(now)
    return earlier == now


def _finished_activations(out: Path, config: ReluTanhConfig, *, images: int, classes: int, data: str,
                          per_class: int | None, log: Callable[[str], None]) -> dict[str, ActivationResult]:
    """Activations of the earlier run in ``out`` that finished; an earlier run with other settings, data
    or images is refused (:func:`resume_settings`)."""
    path = out / RESULT_FILE
    if not path.is_file():
        log(f"note: {out} holds no {RESULT_FILE} to resume from: starting from the beginning")
        return {}
    earlier, knows_per_class = _read_earlier(path)
    given = {k: v for k, v in asdict(config).items() if k in (*RESUME_SETTINGS, "max_epochs")}
    resume_settings(out, given, data=data, per_class=per_class if knows_per_class else None)  # raises if they differ
    if earlier.images != images:  # other data under the same name, or a result.json that did not record per_class
        per = f" (--per-class {earlier.images // classes}?)" if earlier.images % classes == 0 else ""
        raise UserError(f"{path} was made from {earlier.images} images{per}, now {images}: repeat its --per-class "
                        "with --resume, or drop --resume to start over in a new --out")
    finished = {a: r for a, r in earlier.results.items()
                if a in config.activations and (r.reached or len(r.curve) >= config.max_epochs)}
    if config.max_epochs > earlier.config.max_epochs:
        again = [a for a in config.activations if a in earlier.results and a not in finished]
        if again:
            log(f"--max-epochs {config.max_epochs} (result.json: {earlier.config.max_epochs}): "
                f"{', '.join(again)} did not reach the target and trains again from the start")
    return finished


def write_outputs(result: ReluTanhResult, out: Path) -> None:
    from alexnet.experiments.plots import plot_relu_vs_tanh

    write_atomic(out / "result.json", json.dumps(result.to_dict(), indent=1) + "\n")
    rows = ["activation,lr,chosen,epoch,train_error"]
    for a, r in result.results.items():
        for lr, errs in r.sweep.items():
            chosen = float(lr) == r.lr
            curve = r.curve if chosen else errs
            rows += [f"{a},{lr},{int(chosen)},{k},{e:.6f}" for k, e in enumerate(curve, start=1)]
    write_atomic(out / "curves.csv", "\n".join(rows) + "\n")
    plot_relu_vs_tanh(result, out / "figure1.png")
    write_atomic(out / "summary.txt", result.summary() + "\n")


def result_from_json(path: str | os.PathLike) -> ReluTanhResult:
    """A :class:`ReluTanhResult` back from its ``result.json`` (e.g. to redraw the plot)."""
    d = json.loads(Path(path).read_text())
    cfg = d["config"]
    config = ReluTanhConfig(**{**cfg, "lrs": tuple(cfg["lrs"]), "activations": tuple(cfg["activations"])})
    results = {k: ActivationResult(**v) for k, v in d["results"].items()}
    return ReluTanhResult(config, d["images"], results, d.get("wall_seconds", 0.0), d.get("data", ""),
                          d.get("per_class"))
