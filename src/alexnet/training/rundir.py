"""The run directory that ``alexnet train`` writes (rank 0 only).

    config.yaml          the TrainConfig as asked for (what ``--resume`` reads back: ``device: auto``
                         chooses again on the machine that resumes)
    resolved.yaml        what that config became on this machine (device, precision, compile and
                         its cache folder, channels_last, crop, threads, processes, steps, warm-up,
                         versions)
    metrics.csv          one row per epoch (METRIC_COLUMNS; errors as fractions; ``stalled`` is 1 for an
                         epoch at chance level)
    curves.png           loss and errors (in percent) against epochs
    tb/                  TensorBoard events, when tensorboard is installed
    last.pt, best.pt     checkpoints (best = lowest validation top-1 error; a hard link, no second write)
    weights.safetensors  the final weights with arch, model options, classes and preprocessing
    summary.json         final errors as fractions (centre crop and 10 crops), time per phase
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
import re
from pathlib import Path

from alexnet.errors import UserError
from alexnet.files import check_writable_folder, write_atomic

METRIC_COLUMNS = ("epoch", "train_loss", "train_top1_err", "train_top5_err", "val_top1_err", "val_top5_err",
                  "lr", "images_per_s", "seconds", "stalled")
CONFIG_FILE = "config.yaml"
RESOLVED_FILE = "resolved.yaml"
LAST = "last.pt"
BEST = "best.pt"
WEIGHTS = "weights.safetensors"
SUMMARY = "summary.json"


def default_run_dir(name: str, root: str | os.PathLike = "runs") -> Path:
    """``runs/<name>``, or ``runs/<name>-2``, ``-3``... when that one already holds a run."""
    root = Path(root)
    path = root / name
    k = 2
    while path.exists() and any(path.iterdir()):
        path = root / f"{name}-{k}"
        k += 1
    return path


_TEMPORARY = re.compile(r"\.(last\.pt|best\.pt|metrics\.csv|curves\.png|summary\.json|weights\.safetensors"
                        r"|config\.yaml|resolved\.yaml)"
                        r"\.tmp\d+")


def remove_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files that a run killed in the middle of a write left in its directory (the
    names this module and the checkpoint writer use, nothing else); return them."""
    stale = [p for p in path.iterdir() if p.is_file() and _TEMPORARY.fullmatch(p.name)] if path.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_fresh(path: Path) -> None:
    """Refuse to start a new run over one that has a checkpoint (that is what ``--resume`` is for). A run
    stopped before its first checkpoint left nothing to continue: its folder may be started afresh. A
    folder that holds a prepared dataset, a file, or a place where nothing can be written, are refused too."""
    check_writable_folder(path)
    if (path / "meta.json").is_file() and (path / "shards").is_dir():
        raise UserError(f"{path} holds a prepared dataset: choose another --out for the run")
    if (path / LAST).exists():
        raise UserError(f"{path} already holds a run; continue it with --resume {path}, or choose another --out")


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_metrics_csv(path: Path, history: list[dict]) -> None:
    """The whole history each time (it comes from the checkpoint, so a resumed run stays consistent)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(METRIC_COLUMNS)
    for row in history:
        w.writerow([_fmt(row.get(c)) for c in METRIC_COLUMNS])
    write_atomic(path, buf.getvalue())


# Past this many epochs the curves are drawn without a marker per epoch (90 markers make a bead chain).
MARKERS_UP_TO = 20
# The learning-rate axis spans at most this factor: a cosine schedule's last epoch (7.5e-07 after 4e-03)
# would otherwise stretch it over four decades; what falls below is said in the legend.
LR_AXIS_SPAN = 1e3


def _number(value, scale: float = 1.0) -> float:
    """A metrics value to draw: ``scale * value`` (numpy scalars too), NaN for a missing, unreadable or
    infinite one (a diverged epoch's inf would make the axis limits infinite)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return float("nan")
    value = scale * float(value)
    return value if math.isfinite(value) else float("nan")


def error_limits(values, margin: float = 0.06) -> tuple[float, float]:
    """The error axis (percent) for ``values``: their range and a margin (``margin`` of it, at least one
    point), never below 0 or above 100 (unless a value is). A run from 52% down to 0.00% fills the axis
    rather than lying flat at the bottom of a 0-100 one."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return 0.0, 100.0
    low, high = min(finite), max(finite)
    pad = max(margin * (high - low), 1.0)
    # past 0 or 100 only for values out there (not an error rate), which are then shown, not hidden
    return min(max(0.0, low - pad), low), max(min(100.0, high + pad), high)


def _lr_axis(ax, epochs: list, lrs: list[float], handles: list) -> None:
    """The learning rate on a log axis to the right of ``ax``: stepped at the half epochs (where it changed,
    as :func:`lr_drops` marks it), major ticks only, at most :data:`LR_AXIS_SPAN` deep."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [v for v in lrs if v > 0]
    if not positive:
        return
    ax3 = ax.twinx()
    line, = ax3.step(epochs, [v if v > 0 else float("nan") for v in lrs], where="mid", color="0.45", lw=1.2,
                     label="learning rate (right axis)")
    ax3.set_yscale("log")
    high, low = max(positive), min(positive)
    floor = high / LR_AXIS_SPAN
    bottom, top = max(low, floor) / 1.6, high * 1.6
    if low < floor * 0.999:
        line.set_label(f"learning rate (right axis; it falls to {low:.2g}, below the axis)")
    # major ticks only; where fewer than two powers of ten lie in the range, at 1, 2 and 5 times them (the
    # range widened to the nearest of these where none lies in it), so that the axis reads in two labels or more
    if math.floor(math.log10(top)) - math.ceil(math.log10(bottom)) < 1:
        nice = [m * 10.0 ** e for e in range(math.floor(math.log10(bottom)) - 1, math.ceil(math.log10(top)) + 1)
                for m in (1, 2, 5)]
        if not any(bottom <= v <= top for v in nice):
            bottom = max(v for v in nice if v <= bottom)
            top = min(v for v in nice if v >= top)
        ax3.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax3.set_ylim(bottom, top)
    ax3.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))  # as the config writes it: 0.001
    ax3.yaxis.set_minor_formatter(NullFormatter())
    ax3.set_ylabel("learning rate", color="0.4")
    handles.append(line)


def curves_figure(history: list[dict], title: str = "", *, lr_axis: bool = False, top5: bool = True):
    """The figure of ``curves.png`` (and of the report's learning curves): training loss (left; with
    ``lr_axis`` the learning rate on a log axis to its right), top-1/top-5 errors of train and val in
    percent (right), against epochs (ticks at whole epochs only, also for a run of one or two).

    The error axis follows the data (:func:`error_limits`); a marker per epoch up to
    :data:`MARKERS_UP_TO` epochs, none past; the learning rate's cuts (:func:`lr_drops`) are dotted lines
    labelled above the axes, and the legend sits below them: nothing written over a curve or a label.
    ``top5=False`` leaves the top-5 errors out (5 classes or fewer: always 0)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in any thread
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    epochs = [r.get("epoch") for r in history]

    def series(key: str, scale: float = 1.0) -> list[float]:
        return [_number(r.get(key), scale) for r in history]

    mark = len(history) <= MARKERS_UP_TO
    fig = Figure(figsize=(10, 4.3), dpi=100, layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    handles = ax1.plot(epochs, series("train_loss"), "-", marker="o" if mark else None, ms=4, color="C2",
                       label="train loss", clip_on=False, zorder=3)
    ax1.set_ylabel("cross-entropy loss")
    if lr_axis:
        _lr_axis(ax1, epochs, series("lr"), handles)
    shown = []
    for key, label, line, marker in (("train_top1_err", "train top-1", "-", "o"),
                                     ("train_top5_err", "train top-5", "--", "o"),
                                     ("val_top1_err", "val top-1", "-", "s"),
                                     ("val_top5_err", "val top-5", "--", "s")):
        values = series(key, 100.0)
        if any(not math.isnan(v) for v in values) and (top5 or "top5" not in key):
            # not clipped: a marker at 0% (or 100%) is drawn whole over the spine, not cut in half
            handles += ax2.plot(epochs, values, linestyle=line, marker=marker if mark else None, ms=4,
                                color="C0" if key.startswith("train") else "C3", label=label, clip_on=False,
                                zorder=3)
            shown += values
    ax2.set_ylabel("error (%)")
    ax2.set_ylim(*error_limits(shown))
    drops = lr_drops(history)
    span = (max(epochs) - min(epochs)) if epochs and all(isinstance(e, (int, float)) for e in epochs) else 0
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: tick 1 alone
        ax.grid(alpha=0.3)
        level, last = 0, None
        for x, factor in drops:  # where a step in the loss or error may come from
            ax.axvline(x, color="0.5", linestyle=":", linewidth=1)
            if ax is ax2:  # above the axes, where no curve runs; a cut close to the last one a line higher
                level = level + 1 if last is not None and span and (x - last) < 0.14 * span else 0
                ax.text(x, 1.01 + 0.06 * level, f" lr x{factor:.2g}", color="0.35", fontsize=8, va="bottom",
                        ha="left", transform=blended_transform_factory(ax.transData, ax.transAxes))
                last = x
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8.5,
               frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def lr_drops(history: list[dict], at_most: float = 0.2) -> list[tuple[float, float]]:
    """``[(x, factor)]``: where the learning rate stepped down between two epochs (the plateau or step
    schedule's cuts: at least 5x, and the same rate the epoch after), drawn between their points. A
    cosine schedule's gradual fall, even its steep last epochs, is not a step."""
    lrs = [r.get("lr") for r in history]
    out = []
    for i in range(len(lrs) - 2):
        a, b, c = lrs[i:i + 3]
        if not all(isinstance(v, (int, float)) and v > 0 for v in (a, b, c)):
            continue
        if b <= at_most * a and abs(c - b) <= 0.01 * b:
            out.append((history[i]["epoch"] + 0.5, b / a))
    return out


def write_curves(path: Path, history: list[dict], title: str = "", *, top5: bool = True) -> None:
    """``curves.png``: :func:`curves_figure` of the history so far."""
    buf = io.BytesIO()
    curves_figure(history, title, top5=top5).savefig(buf, format="png")
    write_atomic(path, buf.getvalue())


def write_summary(path: Path, summary: dict) -> None:
    write_atomic(path, json.dumps(summary, indent=2, default=_json_default) + "\n")


SUMMARY_MAX_BYTES = 1 << 20  # train writes a few kB


def read_summary(path: Path) -> dict:
    """A run's ``summary.json`` read as untrusted input: a JSON object of at most ``SUMMARY_MAX_BYTES``.
    FileNotFoundError when there is none; ValueError (its message: what is wrong, after the file's name)
    for a file that is too large or not such an object."""
    if path.stat().st_size > SUMMARY_MAX_BYTES:
        raise ValueError(f"is larger than {SUMMARY_MAX_BYTES:,} bytes: not read")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        summary = None
    if not isinstance(summary, dict):
        raise ValueError("cannot be read")
    return summary


def _json_default(o):
    if isinstance(o, float) and math.isnan(o):
        return None
    return str(o)


class TensorBoard:
    """TensorBoard scalars per epoch when ``tensorboard`` is installed; otherwise does nothing."""

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # ImportError, or a broken tensorboard install
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log_epoch(self, row: dict) -> None:
        if self.writer is None:
            return
        for key in METRIC_COLUMNS[1:]:
            value = row.get(key)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(key.replace("_", "/", 1) if "_" in key else key, value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
