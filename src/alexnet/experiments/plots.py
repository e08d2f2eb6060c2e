"""Plots of the experiments, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

from alexnet.plotting import pyplot, save_figure

_STYLE = {"relu": dict(color="black", linestyle="-", label="ReLU"),
          "tanh": dict(color="black", linestyle="--", label="tanh")}
SWEEP_LABEL = "other swept lrs"
"""The legend's entry for the grey lines; there only when some are drawn."""
SWEEP_COLOUR = "0.45"
"""The swept lrs' grey: dark enough to read on white, and drawn over the bold curves (their first epochs
run close to the chosen rate's, under which a light grey drawn first disappeared)."""
_SWEEP_STYLE = dict(color=SWEEP_COLOUR, lw=1.0, marker="o", ms=2.5, alpha=0.9)


def _percent(errors) -> list[float]:
    """The results' errors (fractions) in percent, to draw."""
    return [100 * e for e in errors]


def relu_vs_tanh_figure(result, *, show_sweep: bool = True):
    """Figure 1's style as a matplotlib Figure: training error rate (in percent) against epochs, ReLU solid,
    tanh dashed, the target line dotted.

    The chosen learning rate of each activation is drawn bold; with ``show_sweep`` the sweep's other rates
    (their ``sweep_epochs`` epochs) are drawn thin, dark grey, with a dot per epoch and over the bold curves
    (whose first epochs they follow closely), and the legend names them only when there are any (one swept
    rate leaves none). The epoch each reaches the target is marked. No text sits inside the
    axes: the title and the run's settings are above them, the legend below and the target's label to the
    right, so none can cover a curve whatever its shape.
    """
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    cfg = result.config
    fig, ax = plt.subplots(figsize=(5.2, 4.3), layout="constrained")
    top, swept = 0.0, 0
    handles = []
    for act, r in result.results.items():
        style = dict(_STYLE.get(act, dict(color="C0", linestyle="-", label=act)))
        if show_sweep:
            for lr, errs in r.sweep.items():
                if float(lr) != r.lr and errs:
                    ax.plot(range(1, len(errs) + 1), _percent(errs), linestyle=style["linestyle"], zorder=5,
                            **_SWEEP_STYLE)
                    top = max(top, *errs)
                    swept += 1
        style["label"] = f"{style['label']} (lr {r.lr:g})"
        epochs = range(1, len(r.curve) + 1)
        # one epoch is one point: a marker, else the curve would not show at all
        handles += ax.plot(epochs, _percent(r.curve), lw=1.8, zorder=3, marker="o" if len(r.curve) == 1 else None,
                           ms=4, **style)
        top = max(top, *r.curve)
        if r.reached:
            at = (r.epochs_to_target, 100 * r.curve[r.epochs_to_target - 1])
            ax.plot(*at, "o", color="C3", ms=5, zorder=4)
            ax.annotate(f"{r.epochs_to_target}", at,
                        textcoords="offset points", xytext=(4, -12), fontsize=8, color="C3")
    if swept:
        handles.append(Line2D([], [], **_SWEEP_STYLE, label=f"{SWEEP_LABEL} (first {cfg.sweep_epochs} "
                                                             f"epoch{'s' if cfg.sweep_epochs > 1 else ''})"))
    target = 100 * cfg.target_error
    ax.axhline(target, color="C3", lw=0.8, linestyle=":", zorder=2)
    ax.text(1.01, target, f"{target:g}%", color="C3", fontsize=7, va="center", ha="left",
            transform=blended_transform_factory(ax.transAxes, ax.transData))  # right of the axes, off the data
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Training error rate (%)")
    ax.set_ylim(0, 100 * min(1.0, max(0.75, top + 0.02)))
    ax.set_xlim(0, max(len(r.curve) for r in result.results.values()) + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # whole epochs, also for 1-2
    ratio = result.ratio
    title = "cifar_4layer on CIFAR-10"
    if ratio is not None:
        title += (f": epochs to {target:g}%, tanh / ReLU "
                  f"{'>= ' if result.ratio_is_lower_bound else '= '}{ratio:.1f}x")
    fig.suptitle(title, fontsize=9)
    ax.set_title(f"{result.images} images, batch {cfg.batch_size}, no regularisation\na curve ends once it "
                 "reaches the target (or at the epoch budget)", fontsize=7, color="0.35")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=8, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def plot_relu_vs_tanh(result, out: str | os.PathLike, *, show_sweep: bool = True) -> Path:
    """Draw :func:`relu_vs_tanh_figure` to ``out`` (PNG); returns the path."""
    return save_figure(relu_vs_tanh_figure(result, show_sweep=show_sweep), out, dpi=110)
