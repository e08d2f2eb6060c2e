"""Plots of the experiments, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

from alexnet.plotting import pyplot, save_figure

_STYLE = {"relu": dict(color="black", linestyle="-", label="ReLU"),
          "tanh": dict(color="black", linestyle="--", label="tanh")}


def _percent(errors) -> list[float]:
    """The results' errors (fractions) in percent, to draw."""
    return [100 * e for e in errors]


def plot_relu_vs_tanh(result, out: str | os.PathLike, *, show_sweep: bool = True) -> Path:
    """Figure 1's style: training error rate (in percent) against epochs, ReLU solid, tanh dashed, the 25% line
    dotted.

    The chosen learning rate of each activation is drawn bold; with ``show_sweep`` the sweep's other rates
    are drawn thin and grey. The epoch each reaches the target is marked.
    """
    plt = pyplot()
    cfg = result.config
    fig, ax = plt.subplots(figsize=(5.2, 3.9))
    top = 0.0
    for act, r in result.results.items():
        style = dict(_STYLE.get(act, dict(color="C0", linestyle="-", label=act)))
        if show_sweep:
            for lr, errs in r.sweep.items():
                if float(lr) != r.lr:
                    ax.plot(range(1, len(errs) + 1), _percent(errs), color="0.75", lw=0.8,
                            linestyle=style["linestyle"], zorder=1)
                    top = max(top, *errs)
        style["label"] = f"{style['label']} (lr {r.lr:g})"
        epochs = range(1, len(r.curve) + 1)
        ax.plot(epochs, _percent(r.curve), lw=1.8, zorder=3, **style)
        top = max(top, *r.curve)
        if r.reached:
            at = (r.epochs_to_target, 100 * r.curve[r.epochs_to_target - 1])
            ax.plot(*at, "o", color="C3", ms=5, zorder=4)
            ax.annotate(f"{r.epochs_to_target}", at,
                        textcoords="offset points", xytext=(4, -12), fontsize=8, color="C3")
    ax.axhline(100 * cfg.target_error, color="C3", lw=0.8, linestyle=":", zorder=2)
    ax.text(0.3, 100 * cfg.target_error + 1, f"{100 * cfg.target_error:g}%", color="C3", fontsize=7)
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Training error rate (%)")
    ax.set_ylim(0, 100 * min(1.0, max(0.75, top + 0.02)))
    ax.set_xlim(0, max(len(r.curve) for r in result.results.values()) + 1)
    ratio = result.ratio
    title = "cifar_4layer on CIFAR-10"
    if ratio is not None:
        title += (f": epochs to {100 * cfg.target_error:g}%, tanh / ReLU "
                  f"{'>= ' if result.ratio_is_lower_bound else '= '}{ratio:.1f}x")
    ax.set_title(title, fontsize=9)
    note = f"{result.images} images, batch {cfg.batch_size}, no regularisation"
    if show_sweep:
        note += "; grey: other swept lrs"
    ax.text(0.99, 0.98, note, transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.35")
    ax.legend(loc="upper right", bbox_to_anchor=(1.0, 0.92), fontsize=8, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)
