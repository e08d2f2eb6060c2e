"""``alexnet report``: one self-contained HTML page about a training run.

The page holds the run's config, its learning curves (from ``metrics.csv``), where the run's time went
(``summary.json``'s ``time``), the final top-1/top-5 error with the centre crop and with the paper's 10 crops, conv1's kernels (Figure 3), sample validation images
with their top-5 bars (Figure 4, left) and the most confused class pairs. Every image is a PNG embedded
as a ``data:`` URI and the CSS is inline; nothing is fetched from a network and the page has no script.

The validation set is ``val`` when given, else the one the run trained against (read from its config:
a separate prepared dataset, or the held-out split of its training data).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np
import torch

from alexnet import runtime
from alexnet.errors import UserError
from alexnet.experiments import html as H
from alexnet.files import write_atomic
from alexnet.models.meta import meta_of
from alexnet.plotting import clip_label, png_bytes, pyplot, short_class_name
from alexnet.progress import count

CONFIG_NAMES = ("config.json", "config.yaml", "config.yml", "config.toml", "train_config.json")
MATRIX_MAX_CLASSES = 60  # a larger matrix is unreadable at a page's width: the table of pairs says it


# --------------------------------------------------------------------------------------------- run files
def read_run_config(run_dir: Path) -> tuple[dict, str | None]:
    """The run's config as a dict, and the file it came from (None when the run has none)."""
    for name in CONFIG_NAMES:
        p = run_dir / name
        if not p.is_file():
            continue
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix == ".json":
                data = json.loads(text)
            elif p.suffix in (".yaml", ".yml"):
                from alexnet.untrusted import load_yaml

                data = load_yaml(text, str(p))
            else:
                try:
                    import tomllib
                except ImportError:  # Python 3.10
                    import tomli as tomllib
                data = tomllib.loads(text)
        except UserError:
            raise
        except Exception as e:  # a broken config file is the user's to fix, not a crash
            raise UserError(f"{p}: cannot parse ({(str(e).splitlines() or [type(e).__name__])[0]})") from None
        from alexnet.untrusted import check_bounded

        check_bounded(data, str(p), max_items=100_000)
        return (data if isinstance(data, dict) else {"config": data}), name
    return {}, None


def _given_in_memory(run_dir: Path) -> int | None:
    """The training images of a run whose data was handed to the trainer in memory (resolved.yaml says so),
    else None."""
    import yaml

    from alexnet.training.rundir import RESOLVED_FILE

    path = run_dir / RESOLVED_FILE
    try:
        if not path.is_file() or path.stat().st_size > 1_000_000:
            return None
        from alexnet.untrusted import load_yaml

        given = (load_yaml(path.read_text(encoding="utf-8"), str(path)) or {}).get("data_given_in_memory")
    except (OSError, ValueError, yaml.YAMLError, AttributeError, UserError):
        return None
    n = given.get("train_images") if isinstance(given, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def read_metrics(run_dir: Path) -> list[dict]:
    """Rows of ``metrics.csv`` with numbers parsed (empty cells -> None)."""
    p = run_dir / "metrics.csv"
    if not p.is_file():
        return []
    rows = []
    with p.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                if k is None:
                    continue
                try:
                    parsed[k] = float(v) if v not in ("", None) else None
                except ValueError:
                    parsed[k] = v
            rows.append(parsed)
    return rows


def read_time(run_dir: Path) -> tuple[list[tuple[str, float]], float | None, str | None]:
    """The phases of the run's time from ``summary.json`` (written by ``alexnet train``): ``[(phase,
    seconds)]`` largest first, the total, and a note when there is nothing to show (no file, an older run,
    or a file that does not hold what train writes: only known phases with finite, non-negative seconds
    are read); with phases, the note says when the run was resumed (its time is since then), else None."""
    import math

    from alexnet.training.metrics import PHASES
    from alexnet.training.rundir import read_summary

    try:
        summary = read_summary(run_dir / "summary.json")
        spent, resumed = summary.get("time"), summary.get("resumed_at_step")
    except (FileNotFoundError, IsADirectoryError):
        return [], None, "no summary.json in the run directory (the run did not finish)"
    except ValueError as e:
        return [], None, f"summary.json {e}"
    if not isinstance(spent, dict):
        return [], None, "summary.json has no time per phase (written by an older version)"

    def seconds(key):
        v = spent.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        try:
            v = float(v)  # an int too large for a float raises
        except OverflowError:
            return None
        return v if math.isfinite(v) and v >= 0 else None

    total = seconds("total_s")
    rows = [(k.replace("_", " "), seconds(f"{k}_s")) for k in (*PHASES, "other")]
    rows = sorted(((k, v) for k, v in rows if v is not None), key=lambda r: -r[1])
    # the phases are parts of the total (rounded to ms each): anything else is not a run's time
    if not total or not rows or sum(v for _, v in rows) > total * 1.01 + 0.01:
        return [], None, "summary.json's time does not hold seconds per phase"
    since = (f"; the run was resumed at step {resumed:,}: its time since then"
             if isinstance(resumed, int) and not isinstance(resumed, bool) and resumed > 0 else None)
    return rows, total, since


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flatten(v, key + ".")
        else:
            out.append((key, json.dumps(v) if isinstance(v, (list, tuple, dict)) else v))
    return out


# --------------------------------------------------------------------------------------------- figures

def _png(fig) -> bytes:
    return png_bytes(fig)


def curves_png(metrics: list[dict], *, top5: bool = True) -> bytes:
    """curves.png's figure (:func:`alexnet.training.rundir.curves_figure`: loss left, errors right, the
    learning rate's cuts marked between epochs) with the learning rate on a log axis beside the loss."""
    from alexnet.training.rundir import curves_figure

    return _png(curves_figure(metrics, lr_axis=True, top5=top5))


def confusion_png(conf: np.ndarray, names: list[str]) -> bytes:
    """Confusion matrix (rows: true class, columns: predicted): the colour is the share of the true class's
    images (row-normalised, in percent), the numbers in the cells are image counts; the title and the
    colour bar say so. Classes by their first WordNet name (:func:`alexnet.plotting.short_class_name`)."""
    plt = pyplot()
    k = len(names)
    rates = 100.0 * conf / np.maximum(conf.sum(1, keepdims=True), 1)
    size = min(11.0, 3.2 + 0.42 * k)
    cell_pt = 72 * size * 0.62 / max(k, 1)  # about the height of a cell in points
    tick_font = max(5.5, min(9.5, 0.75 * cell_pt))
    fig, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=100)
    short = [clip_label(short_class_name(n), 22) for n in names]
    ax.set_xticks(range(k), short, rotation=90, fontsize=tick_font)
    ax.set_yticks(range(k), short, fontsize=tick_font)
    ax.set_xlabel("predicted class", fontsize=10)
    ax.set_ylabel("true class", fontsize=10)
    numbers = k <= 20
    if numbers:
        cell_font = max(6.5, min(10.0, 0.6 * cell_pt))
        for i in range(k):
            for j in range(k):
                if conf[i, j]:
                    ax.text(j, i, str(int(conf[i, j])), ha="center", va="center", fontsize=cell_font,
                            color="white" if rates[i, j] > 50 else "black")
    ax.set_title("colour: share of the true class's images (%)" + ("; numbers: images" if numbers else ""),
                 fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="share of the true class (%)")
    return _png(fig)


def matrix_to_draw(conf: np.ndarray, names: list[str], labels: np.ndarray) -> tuple[np.ndarray, list[str], str] | None:
    """The confusion matrix to draw, its class names and its caption: the rows and columns of the classes
    that ``labels`` (the images evaluated) hold, so a data set prepared with the 1000-class list but
    holding 10 of them (Imagenette) gets a 10x10 matrix; None above :data:`MATRIX_MAX_CLASSES` classes."""
    present = np.unique(labels)
    if len(present) > MATRIX_MAX_CLASSES:
        return None
    shown = conf[np.ix_(present, present)]
    caption = "confusion matrix, centre crop (rows: true class)"
    if len(present) < len(conf):
        left = int(conf.sum() - shown.sum())
        caption += (f"; the {len(present)} classes of the images evaluated"
                    + (f", {count(left, 'prediction')} of other classes not shown" if left else ""))
    return shown, [names[i] for i in present], caption


def confused_pairs(conf: np.ndarray, names: list[str], top: int = 10) -> list[tuple[str, str, int, float]]:
    """The largest off-diagonal cells: (true, predicted, count, fraction of the true class's images)."""
    off = conf.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1]
    totals = conf.sum(1)
    out = []
    for flat in order[:top]:
        i, j = np.unravel_index(flat, off.shape)
        if off[i, j] == 0:
            break
        out.append((names[i], names[j], int(off[i, j]), float(off[i, j] / max(totals[i], 1))))
    return out


# --------------------------------------------------------------------------------------------- data
def _val_dataset(config: dict, val: str | os.PathLike | None, run_dir: Path):
    """(dataset, indices or None, description) of the validation images, or (None, None, why not): the
    run's own choice (:func:`alexnet.training.datasets.run_datasets` on its config), or ``val``."""
    from alexnet.data import PreparedDataset
    from alexnet.training.config import TrainConfig
    from alexnet.training.datasets import run_datasets

    if val is not None:
        if not Path(val).exists():
            raise UserError(f"validation data not found: {val}")
        return PreparedDataset(val), None, f"{val}"
    if not config:  # no config file: which data the run used is unknown (an empty config means the demo's)
        return None, None, "the run directory has no config file naming its data; give --val"
    given = _given_in_memory(run_dir)
    if given is not None:
        return None, None, (f"the run was trained on {given} images given in memory (an experiment's subset, "
                            "say), not on its config's data; give --val to evaluate it")
    known = set(TrainConfig.__dataclass_fields__)
    try:
        cfg = TrainConfig.from_dict({k: v for k, v in config.items() if k in known})
    except UserError as e:
        return None, None, f"the run's config cannot be read ({e}); give --val"
    if cfg.val is None and not cfg.val_split:
        return None, None, "the run's config names no validation data; give --val"
    try:
        data = run_datasets(cfg, relative_to=run_dir)
    except (UserError, OSError) as e:
        return None, None, str(e)
    return data.val, data.val_idx, data.val_desc


def _limit(indices: np.ndarray, max_images: int | None, seed: int = 0) -> np.ndarray:
    if max_images is None or len(indices) <= max_images:
        return indices
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(indices, size=max_images, replace=False))


# --------------------------------------------------------------------------------------------- report
def build_report(run_dir: str | os.PathLike, *, out: str | os.PathLike | None = None,
                 val: str | os.PathLike | None = None, samples: int = 12, max_images: int | None = None,
                 ten_crop: bool = True, device: str | None = "auto", progress: bool = True,
                 batch_size: int = 64) -> Path:
    """Write the report of ``run_dir`` (see the module docstring) to ``out`` (default
    ``run_dir/report.html``) and return its path."""
    import alexnet
    from alexnet.evaluation import evaluate
    from alexnet.evaluation.batches import iter_squares
    from alexnet.evaluation.plots import plot_predictions
    from alexnet.evaluation.predict import Prediction, class_probabilities, top_classes
    from alexnet.inspect.kernels import plot_kernels
    from alexnet.weights.classes import match_classes
    from alexnet.weights.load import model_classes

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run directory" if run_dir.exists()
                        else f"run directory not found: {run_dir}")
    if samples < 0:
        raise UserError(f"samples must be >= 0, got {samples}")
    if max_images is not None and max_images < 1:
        raise UserError(f"max-images must be at least 1, got {max_images}")
    out = Path(out) if out is not None else run_dir / "report.html"
    device = runtime.resolve_device(device or "auto")
    config, config_name = read_run_config(run_dir)
    metrics = read_metrics(run_dir)
    model = alexnet.load(run_dir, device=device, progress=False)
    arch = meta_of(model).arch or "?"
    classes = model_classes(model)
    sections: list[str] = []

    # config
    rows = _flatten(config)
    sections.append("<h2>Config</h2>" + (H.table(["setting", "value"], rows, numeric=[False, False]) if rows else
                                        '<p class="note">no config file in the run directory</p>')
                    + (f'<p class="note">from <code>{H.esc(config_name)}</code>; weights '
                       f'<code>{H.esc(meta_of(model).source)}</code>, model <code>{H.esc(arch)}</code> '
                       f'{H.esc(meta_of(model).options or "")}, '
                       f'{alexnet.count_parameters(model):,} parameters</p>'))

    # learning curves
    if metrics:
        last = metrics[-1]
        sections.append("<h2>Learning curves</h2>" + H.img_png(curves_png(metrics, top5=len(classes) > 5), "learning curves",
                        f"{count(len(metrics), 'epoch')} from metrics.csv; training error is over each epoch's "
                        "augmented crops, validation error on the centre crop")
                        + H.table(["", "value"], [(k, _fmt(v, percent=k.endswith("_err"))) for k, v in last.items()],
                                  numeric=[False, True]))
    else:
        sections.append('<h2>Learning curves</h2><p class="note">no metrics.csv in the run directory</p>')

    # where the time went
    phases, total, note = read_time(run_dir)
    if phases:
        sections.append("<h2>Where the time went</h2>" + H.table(
            ["phase", "seconds", "share"], [(k, f"{v:.1f}", f"{100 * v / max(total, 1e-9):.0f}%") for k, v in phases],
            numeric=[False, True, True]) + f'<p class="note">{total:.1f} s in all, from summary.json'
            f"{H.esc(note or '')}</p>")
    else:
        sections.append(f'<h2>Where the time went</h2><p class="note">{H.esc(note)}</p>')

    # final metrics, samples, confusions
    ds, indices, val_desc = _val_dataset(config, val, run_dir)
    if ds is None:
        sections.append(f'<h2>Final metrics</h2><p class="note">no validation data: {H.esc(val_desc)}</p>')
    else:
        indices = _limit(np.arange(len(ds)) if indices is None else np.asarray(indices), max_images)
        results = [evaluate(model, ds, crops=1, batch_size=batch_size, indices=indices, progress=progress)]
        if ten_crop:
            results.append(evaluate(model, ds, crops=10, batch_size=max(1, batch_size // 4), indices=indices,
                                    progress=progress))
        rows = [("centre crop" if r.crops == 1 else "10 crops (paper)", r.images, _fmt(r.top1_error, percent=True),
                 _fmt(r.top5_error, percent=True)) for r in results]
        sections.append("<h2>Final metrics</h2>" + H.table(["test", "images", "top-1 error", "top-5 error"],
                                                          rows, numeric=[False, True, True, True])
                        + f'<p class="note">validation images: {H.esc(val_desc)}'
                        + (f", a random {len(indices)} of them" if max_images else "") + "</p>")

        # one pass of centre-crop probabilities for the confusions and the samples
        data_classes = list(getattr(ds, "classes", []) or [])
        class_map = match_classes(data_classes, classes if meta_of(model).classes else [],
                                  int(getattr(model, "num_classes", 0) or len(data_classes)))
        labels = np.asarray(ds.labels, dtype=np.int64)
        preds = np.empty(len(indices), dtype=np.int64)
        pos = 0
        model.eval()
        for _, squares in iter_squares(ds, indices, batch_size):
            probs = class_probabilities(model, squares)
            preds[pos:pos + len(probs)] = probs.argmax(-1).cpu().numpy()
            pos += len(probs)
        model_to_data = {m: d for d, m in enumerate(class_map)}
        k = len(class_map)
        conf = np.zeros((k, k), dtype=np.int64)
        for y, p in zip(labels[indices], preds, strict=True):
            if p in model_to_data:  # a prediction outside the dataset's classes has no column
                conf[y, model_to_data[p]] += 1
        names = [str(c.get("name") or c.get("wnid") or i) for i, c in enumerate(data_classes)] or \
            [str(i) for i in range(k)]
        pairs = confused_pairs(conf, names)
        outside = int(len(indices) - conf.sum())
        conf_html = "<h2>Most confused classes</h2>"
        if pairs:
            conf_html += H.table(["true class", "predicted as", "images", "share of the true class"],
                                 [(a, b, n, _fmt(r, percent=True)) for a, b, n, r in pairs],
                                 numeric=[False, False, True, True])
        else:
            conf_html += '<p class="note">no confusions among the images evaluated</p>'
        if outside:
            conf_html += (f'<p class="note">{outside} images were predicted as a class outside the '
                          "dataset's classes (not in the matrix)</p>")
        matrix = matrix_to_draw(conf, names, labels[indices])
        if matrix is not None:
            conf_html += H.img_png(confusion_png(matrix[0], matrix[1]), "confusion matrix", matrix[2])
        sections.append(conf_html)

        if samples:
            pick = _limit(indices, samples, seed=1)
            squares = np.stack([np.asarray(ds.get_uint8(int(i)), dtype=np.uint8) for i in pick])
            probs = class_probabilities(model, torch.from_numpy(squares)).cpu()
            tops = top_classes(probs, classes, 5)
            predictions = [Prediction(str(i), t) for i, t in zip(pick, tops, strict=True)]
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                png = plot_predictions(list(squares), predictions, Path(tmp) / "samples.png",
                                       labels=[class_map[int(labels[i])] for i in pick], classes=classes,
                                       columns=min(6, len(pick)))
                data = png.read_bytes()
            sections.insert(-1, "<h2>Sample validation predictions</h2>" + H.img_png(
                data, "sample predictions", f"{len(pick)} random validation images (centre crop) with the "
                "five most probable classes; the true class is written under each image and its bar is red"))

    # conv1 kernels (Figure 3)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        kpng = plot_kernels(model, Path(tmp) / "kernels.png").read_bytes()
    sections.append("<h2>conv1 kernels</h2>" + H.img_png(kpng, "conv1 kernels", "the first layer's kernels, "
                    "each scaled to its own range (the paper's Figure 3)"))

    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = H.page(f"Training run: {run_dir.name}", sections,
                  subtitle=f"{arch}, {len(classes)} classes; report written {when} by alexnet {alexnet.__version__}")
    return write_atomic(out, text)


def _fmt(v: object, percent: bool = False) -> str:
    """A table cell; ``percent``: a fraction shown in percent, with its sign."""
    if isinstance(v, float):
        return f"{100 * v:.2f}%" if percent else f"{v:.6g}"
    return "" if v is None else str(v)
