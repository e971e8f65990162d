"""The training curves of a cell: losses and validation metrics per epoch, mean over seeds with the
min-max band, drawn from its runs' history.csv (`figures_history` reads them in bounded memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.results.figures import label, new_figure, plain_figure
from orchestrator.results.figures_history import MAX_CURVE_POINTS, History, is_loss, numeric
from trainers import contract

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["MAX_CURVE_POINTS", "curves_figure", "is_loss", "metric_unit", "numeric", "robust_limits"]


@plain_figure
def curves_figure(history: pd.DataFrame | History, scale: float = 100.0) -> Figure:
    """Losses (train solid, val dashed; a hierarchical run's per-level losses too, `is_loss`) and
    validation metrics per epoch: mean over seeds, band min to max. A fraction metric (top-1, F1) is
    drawn times `scale`, the tables' scale (100: %); each y axis names its metric and unit.

    One line per metric whatever the number of seeds, so a cell of 2,500 seeds draws as fast as one of 3.
    Each axis spans the bulk of its values (`robust_limits`): a 1e308 or an infinite value of one run
    flattened every other curve; what lies beyond is drawn at the edge, marked with a triangle and
    counted in the axis title.
    """
    history = history if isinstance(history, History) else History.of(history)
    figure = new_figure(10, 3.4)
    loss_ax, metric_ax = figure.subplots(1, 2)
    mean = history.mean.drop(columns=["seed"]).groupby("epoch").mean()
    low = history.low.drop(columns=["seed"]).groupby("epoch").min()
    high = history.high.drop(columns=["seed"]).groupby("epoch").max()
    if len(mean) > MAX_CURVE_POINTS:
        mean, low, high = _spans(mean, "mean"), _spans(low, "min"), _spans(high, "max")
    epochs = max(history.epochs, len(mean))
    xlabel = f"epoch ({epochs:,} drawn in {len(mean):,} spans)" if epochs > len(mean) else "epoch"
    losses = [c for c in mean.columns if is_loss(c)]
    metric_names = [c for c in mean.columns if c.startswith("val_") and not is_loss(c)]
    fractions = [c for c in metric_names if contract.is_fraction("val." + c[4:])]
    values = history.mean.drop(columns=["seed", "epoch"])  # each run's values: the axes span their bulk
    for frame in (mean, low, high, values):
        frame[fractions] = frame[fractions] * scale
    styles = ["-", "--", ":", "-."]
    lines = [(loss_ax, c, "--" if c.startswith("val_") else "-", f"C{i % 10}") for i, c in enumerate(losses)]
    lines += [(metric_ax, c, styles[i % len(styles)], f"C{(i + 2) % 10}") for i, c in enumerate(metric_names)]
    unit = metric_unit(scale)
    shared = bool(metric_names) and len(fractions) == len(metric_names)  # else each fraction's legend says it
    names = {c: label(c) + (unit if c in fractions and not shared and unit else "") for c in mean.columns}
    metric_y = "validation metric" + (unit if shared else "")
    for ax, title, ylabel in ((loss_ax, "loss", "loss"), (metric_ax, "validation metrics", metric_y)):
        drawn = [(c, s, color) for a, c, s, color in lines if a is ax and mean[c].notna().any()]
        limits = robust_limits(values[[c for c, _, _ in drawn]].to_numpy(dtype=float).ravel())
        clipped = sum(_curve(ax, (mean[c], low[c], high[c]), limits, s, color, names[c]) for c, s, color in drawn)
        if limits is not None:
            ax.set_ylim(*limits)
        beyond = f" ({clipped} point{'s' if clipped > 1 else ''} off the axis: ▲▼)" if clipped else ""
        ax.set(title=title + beyond, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return figure


def metric_unit(scale: float) -> str:
    """The unit a fraction metric drawn times `scale` reads in, as the tables say it: ` (%)` for 100,
    ` (fraction)` for 1, ` (×1000)` otherwise."""
    return " (%)" if scale == 100.0 else " (fraction)" if scale == 1.0 else f" (×{scale:g})"


def _spans(frame: pd.DataFrame, how: str) -> pd.DataFrame:
    """Per-epoch values (index: epoch) in MAX_CURVE_POINTS consecutive spans of epochs, each at its first
    epoch: `how` "mean" for the mean line, "min"/"max" for the band (which still holds every value)."""
    import numpy as np

    span = np.arange(len(frame)) * MAX_CURVE_POINTS // len(frame)
    first = frame.index.to_series().groupby(span).first()
    return frame.groupby(span).agg(how).set_axis(first.to_numpy())


CURVE_QUANTILES = (0.05, 0.95)
"""The bulk of a curve axis's values: `robust_limits` keeps values up to CURVE_SPREAD widths beyond it."""
CURVE_SPREAD = 5.0


def robust_limits(values: Any) -> tuple[float, float] | None:
    """y-limits of a curve axis: the finite `values` (an array) within CURVE_SPREAD times the width of
    their CURVE_QUANTILES range beyond it, padded by 5%; None without a finite value. A loss falling
    from 2.3 to 0.3 keeps its first epoch; a 1e308 of one run is left beyond the axis."""
    import numpy as np

    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    q_low, q_high = (float(q) for q in np.quantile(finite, CURVE_QUANTILES))
    # A flat bulk (every epoch 0.5) still keeps a value a tenth of its size away.
    width = max(q_high - q_low, 0.1 * max(abs(q_low), abs(q_high)), 1e-12)
    kept = finite[(finite >= q_low - CURVE_SPREAD * width) & (finite <= q_high + CURVE_SPREAD * width)]
    low, high = float(kept.min()), float(kept.max())
    pad = 0.05 * (high - low) or 0.05 * (abs(high) or 1.0)
    return low - pad, high + pad


def _curve(
    ax: Any, band: tuple[pd.Series, pd.Series, pd.Series], limits: tuple[float, float] | None, *look: str
) -> int:
    """One curve: its mean (`band[0]`) as a line, its min-max band around it, both cut at `limits` (the
    axis's y-limits); an epoch whose values go beyond them gets a triangle at that edge.
    `look`: style, color and label. Returns the epochs marked."""
    import numpy as np

    style, color, name = look
    mean, low, high = (np.asarray(series, dtype=float) for series in band)
    epochs = np.asarray(band[0].index, dtype=float)
    if limits is None:
        ax.plot(epochs, mean, style, color=color, marker=".", label=name)
        ax.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
        return 0
    bottom, top = limits
    ax.plot(epochs, np.clip(mean, bottom, top), style, color=color, marker=".", label=name)
    ax.fill_between(epochs, np.clip(low, bottom, top), np.clip(high, bottom, top), color=color, alpha=0.2, linewidth=0)
    above, below = high > top, low < bottom  # NaN (no value that epoch) compares False
    for beyond, edge, marker in ((above, top, "^"), (below, bottom, "v")):
        if beyond.any():
            ax.plot(epochs[beyond], np.full(int(beyond.sum()), edge), marker, color=color, markersize=7, clip_on=False)
    return int((above | below).sum())
