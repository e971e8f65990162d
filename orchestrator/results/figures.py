"""The report's figures: matplotlib drawings of DataFrames (no file is read here).

Every text a figure shows (row labels, class names, history columns) comes from a spec or a run
folder, so figures are built and saved with mathtext and usetex off (`plain_text`): a label like
`+ Aug $\\alpha^$` is drawn as written instead of failing the report with a mathtext error. Control,
bidi and zero-width characters in that text (an ESC in a class name of per_class.csv) are drawn as
`\\x1b` (`label`): matplotlib has no glyph for them and warned on stderr for each.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec

from orchestrator import textsafe

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

_P = ParamSpec("_P")


@contextlib.contextmanager
def plain_text() -> Iterator[None]:
    """Build and save figures in this context (mathtext and usetex off: `$`, `\\`, `^`, `_` are just
    characters): text artists take `parse_math` from it when created,
    tick labels when drawn."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield


def plain_figure(build: Callable[_P, Figure]) -> Callable[_P, Figure]:
    """A figure builder run under `plain_text` (a decorator)."""

    @functools.wraps(build)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> Figure:
        with plain_text():
            return build(*args, **kwargs)

    return wrapped


DPI = 90
# Axis-tick labels stop being readable beyond these class counts.
MAX_TICK_LABELS = 40
MAX_ANNOTATED = 15
MAX_BARS = 50
MAX_DOTS = 200
"""Seed dots per row of an ablation figure (more would only overdraw)."""
MAX_ABLATION_ROWS = 30
"""Rows an ablation figure draws (the first, in the table's order): it widens by 1.2 in per row, and
a 600-row ladder would pass the renderer's largest image (2^16 pixels) and stop the report."""
MAX_LABEL_CHARS = 60
"""A longer label is cut with `…` (the tables hold it whole)."""


def label(value: object) -> str:
    """Text from a run folder or a spec as a figure draws it: one line, control characters as `\\x1b`,
    at most MAX_LABEL_CHARS characters."""
    text = textsafe.one_line(str(value))
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def labels(values: Iterable[object]) -> list[str]:
    """`label` of each value (tick labels: class names, table rows)."""
    return [label(value) for value in values]


def new_figure(width_in: float, height_in: float) -> Figure:
    """An empty figure of that size at DPI, laid out by matplotlib's constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


@plain_figure
def confusion_figure(matrix: pd.DataFrame, n_runs: int) -> Figure:
    """Row-normalised heatmap (recall on the diagonal); counts written in small matrices."""
    n_rows, n_cols = matrix.shape
    side = min(9.0, max(3.5, 0.32 * max(n_rows, n_cols) + 1.5))
    figure = new_figure(side + 1.0, side)
    ax = figure.subplots()
    totals = matrix.sum(axis=1).replace(0, 1)
    shares = matrix.div(totals, axis=0)
    image = ax.imshow(shares.to_numpy(dtype=float), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    figure.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    if max(n_rows, n_cols) <= MAX_TICK_LABELS:
        ax.set_xticks(range(n_cols), labels(matrix.columns), rotation=90, fontsize=7)
        ax.set_yticks(range(n_rows), labels(matrix.index), fontsize=7)
    if max(n_rows, n_cols) <= MAX_ANNOTATED:
        values = matrix.to_numpy()
        shares_np = shares.to_numpy(dtype=float)
        for i in range(n_rows):
            for j in range(n_cols):
                color = "white" if shares_np[i, j] > 0.6 else "black"
                ax.text(j, i, f"{values[i, j]:g}", ha="center", va="center", fontsize=7, color=color)
    outcomes = [str(c) for c in matrix.columns] == ["tn", "fp", "fn", "tp"]
    if outcomes:  # multilabel: one row per label, its test images by outcome
        ax.set(xlabel="outcome", ylabel="label")
        image.colorbar.set_label("share of the test images")  # type: ignore[union-attr]
    else:
        ax.set(xlabel="predicted", ylabel="true")
    return figure


@plain_figure
def bars_figure(scores: pd.Series) -> Figure:
    """Horizontal F1 bars, worst at the top; only the extremes when there are many classes."""
    import pandas as pd

    ordered = scores.sort_values()
    if len(ordered) > MAX_BARS:
        ordered = pd.concat([ordered.head(MAX_BARS // 2), ordered.tail(MAX_BARS // 2)])
    height = max(2.0, 0.22 * len(ordered) + 0.8)
    figure = new_figure(5.5, height)
    ax = figure.subplots()
    ax.barh(range(len(ordered)), ordered.to_numpy(dtype=float), color="C0")
    ax.set_yticks(range(len(ordered)), labels(ordered.index), fontsize=7)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="F1")
    ax.grid(axis="x", alpha=0.3)
    return figure


@plain_figure
def distribution_figure(counts: pd.Series, share_of: str = "the split") -> Figure:
    """Images per class, sorted, with each class's share of the split (`share_of`: what the counts sum
    to; a multilabel split's images per label sum to its positive labels, not its images)."""
    import numpy as np

    ordered = counts.sort_values(ascending=False).head(MAX_BARS)
    figure = new_figure(max(5.0, 0.25 * len(ordered) + 1.5), 3.2)
    ax = figure.subplots()
    ax.bar(range(len(ordered)), ordered.to_numpy(dtype=float), color="C2")
    ticks = labels(ordered.index) if len(ordered) <= MAX_TICK_LABELS else []
    if ticks:
        ax.set_xticks(range(len(ordered)), ticks, rotation=90, fontsize=7)
    ax.set(ylabel="images")
    total = float(counts.sum()) or 1.0
    up, down = 100.0 / total, total / 100.0  # counts to % of the total and back
    share = ax.secondary_yaxis("right", functions=(lambda x: np.multiply(x, up), lambda x: np.multiply(x, down)))
    share.set_ylabel(f"% of {share_of}")
    return figure


ROWS_ACROSS = 6
"""Rows an ablation figure draws side by side (1.2 in each: 830 px at 6); more go down the y axis, a
row's name and n= on its left and its mean ± std on its right, so 30 rows keep the page's width."""


@plain_figure
def ablation_figure(
    rows: list[tuple[str, list[float]]],
    ylabel: str,
    bounds: tuple[float, float] | None = None,
    baselines: Sequence[int | None] = (),
    planned: Sequence[int] = (),
) -> Figure:
    """Per table row (the first MAX_ABLATION_ROWS): each seed's value as a dot (at most MAX_DOTS, an
    even sample), the mean ± std over seeds as the table's cell reports it, and the mean of the row it
    is compared against (`baselines`: per row, the position in `rows` of its baseline, as the tables
    pair them; None or left out: none) dashed, see `baseline_marks`. Each row says its seeds:
    `n=3`, `n=2 of 3` where `planned` (per row, its planned runs) counts more: a failed run shows.
    `bounds`: the metric's range (None: 0..100 for a `%` label whose values lie in it); bars and axis stay
    in it (`cut_rows`). Past ROWS_ACROSS rows, the rows go down the y axis (the values along x)."""
    bounds = bounds or _percent_bounds(ylabel, [v for _, values in rows for v in values])
    shared, marks = baseline_marks(rows, baselines)
    rows = rows[:MAX_ABLATION_ROWS]
    down = len(rows) > ROWS_ACROSS
    figure = new_figure(8.0, 0.36 * len(rows) + 1.2) if down else new_figure(max(4.5, 1.2 * len(rows) + 2.0), 3.6)
    ax = figure.subplots()
    _draw_rows(ax, rows, bounds, down)
    _draw_baselines(ax, shared, marks, down)
    runs = [*planned, *[0] * len(rows)]  # a row without a planned count says only its seeds
    counts = [f"n={len(v)}" + (f" of {n}" if n > len(v) else "") for (_, v), n in zip(rows, runs, strict=False)]
    if down:
        names = [f"{_wrapped(r, 36, 2)}  {n}" for (r, _), n in zip(rows, counts, strict=True)]
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.invert_yaxis()
        means = ax.secondary_yaxis("right")
        means.set_yticks(range(len(rows)), [_mean_std(v) for _, v in rows], fontsize=8)
        ax.set(xlabel=label(ylabel))
    else:
        names = [f"{_wrapped(r)}\n{n}" for (r, _), n in zip(rows, counts, strict=True)]
        ax.set_xticks(range(len(rows)), names, fontsize=8)
        ax.set(ylabel=label(ylabel))
    if bounds is not None:
        low, high = ax.get_xlim() if down else ax.get_ylim()
        (ax.set_xlim if down else ax.set_ylim)(max(low, bounds[0]), min(high, bounds[1]))
    ax.grid(axis="x" if down else "y", alpha=0.3)
    return figure


def _draw_rows(ax: Any, rows: list[tuple[str, list[float]]], bounds: tuple[float, float] | None, down: bool) -> None:
    """Each row's seeds as dots and its mean ± std (cut at `bounds`), at x = its position (y when `down`)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for at, (_, values) in enumerate(rows):
        data = np.asarray(values, dtype=float)
        shown = data if len(data) <= MAX_DOTS else data[np.linspace(0, len(data) - 1, MAX_DOTS).astype(int)]
        spread = at + rng.uniform(-0.15, 0.15, len(shown))
        ax.scatter(*((shown, spread) if down else (spread, shown)), s=10, color="C0", alpha=0.5, linewidths=0)
        if len(data) == 0:
            continue
        # The std the table prints (ddof=1): a 95% t-interval of each mean was drawn, 12.7 standard
        # errors at 2 seeds, an interval no table reports (the tables' intervals are the paired deltas').
        mean, std = float(data.mean()), float(data.std(ddof=1)) if len(data) > 1 else 0.0
        low, high = (max(mean - std, bounds[0]), min(mean + std, bounds[1])) if bounds else (mean - std, mean + std)
        error = {"xerr" if down else "yerr": [[mean - low], [high - mean]]}
        place = (mean, at + 0.3) if down else (at + 0.3, mean)
        ax.errorbar(*place, **error, fmt="D", color="C3", capsize=4 if std else 0)


def _draw_baselines(ax: Any, shared: str | None, marks: list[tuple[int, float]], down: bool) -> None:
    """The baseline's mean dashed: one line at `shared`'s mean, else a mark per row (`baseline_marks`)."""
    import numpy as np

    if shared is not None:
        # A leading '_' would hide the label (matplotlib skips such legend entries): a space keeps it.
        name = f"{label(shared)} (mean)"
        line = ax.axvline if down else ax.axhline
        line(marks[0][1], color="0.4", linestyle="--", linewidth=1, label=f" {name}" if name[0] == "_" else name)
    elif marks:  # each row against its own baseline (another learning rate's, say): a mark per row
        at, mean = [x for x, _ in marks], [y for _, y in marks]
        draw = ax.vlines if down else ax.hlines
        draw(mean, np.subtract(at, 0.4), np.add(at, 0.45), "0.4", "--", label="the row's baseline (mean)", linewidth=1)
    if marks:
        ax.legend(fontsize=7, loc="best")


def _mean_std(values: list[float]) -> str:
    """A row's mean ± std as its table cell gives it (3 significant digits of the mean)."""
    import statistics

    from orchestrator.results.labels import decimals_for

    if not values:
        return "no finished run"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    places = decimals_for(abs(mean), 1) if math.isfinite(mean) else 1
    return f"{mean:.{places}f} ± {std:.{places}f}"


def cut_rows(rows: list[tuple[str, list[float]]], ylabel: str) -> list[str]:
    """The rows (of the first MAX_ABLATION_ROWS) whose mean ± std bar `ablation_figure` cuts at the
    metric's 0..100% range (none where the metric is no percent), for the caption."""
    import statistics

    bounds = _percent_bounds(ylabel, [v for _, values in rows for v in values])
    if bounds is None:
        return []
    cut = []
    for name, values in rows[:MAX_ABLATION_ROWS]:
        if len(values) > 1:
            mean, std = statistics.fmean(values), statistics.stdev(values)
            cut += [name] if mean - std < bounds[0] or mean + std > bounds[1] else []
    return cut


def _wrapped(row: str, width: int = 16, lines: int = 3) -> str:
    """A row's tick label in at most `lines` lines of `width` (a long one squeezed the axes away)."""
    import textwrap

    return "\n".join(textwrap.wrap(label(row), width, max_lines=lines, placeholder="…")) or label(row)


def baseline_marks(
    rows: list[tuple[str, list[float]]], baselines: Sequence[int | None]
) -> tuple[str | None, list[tuple[int, float]]]:
    """The baselines an ablation figure draws: (the label of the one row every drawn row is compared
    against, drawn as a line, or None where the rows have different baselines or some have none;
    [(drawn row, its baseline's mean)] for the rows whose baseline has a value).

    The first row is no baseline of every row: with extra grid axes (two learning rates in one figure)
    each row is compared against the baseline row at its own values, and a line at the first row's
    mean put the other rows' deltas where they are not."""
    import numpy as np

    drawn = min(len(rows), MAX_ABLATION_ROWS)
    pairs = [(x, b) for x, b in enumerate(list(baselines)[:drawn]) if b is not None and rows[b][1]]
    marks = [(x, float(np.mean(rows[b][1]))) for x, b in pairs]
    ones = {b for _, b in pairs}
    shared = rows[ones.pop()][0] if len(ones) == 1 and len(pairs) == drawn else None
    return shared, marks


def baseline_caption(
    rows: list[tuple[str, list[float]]], baselines: Sequence[int | None], baseline: str, axes: Sequence[str]
) -> str:
    """What an ablation figure's dashed line or marks are (`baseline_marks`), for its caption (raw text:
    the report's template escapes it): `baseline` is the spec's baseline row, `axes` the grid axes a
    row's baseline shares with it."""
    shared, marks = baseline_marks(rows, baselines)
    if shared is not None:
        return f"the dashed line the mean of {shared}, the baseline of every row"
    same = f" at the same {', '.join(axes)}" if axes else ""
    if not marks:
        return f"no baseline line: {baseline} has no finished run in this figure"
    missing = "; none where it has no finished run" if len(marks) < min(len(rows), MAX_ABLATION_ROWS) else ""
    return (
        "no line for all rows, as they have different baselines: a dashed mark at each row's baseline "
        f"mean ({baseline}{same}){missing}"
    )


def _percent_bounds(text: str, values: list[float]) -> tuple[float, float] | None:
    """0..100 for a percent metric (its label `text` says `%` and every value lies in that range)."""
    inside = all(0.0 <= v <= 100.0 for v in values)
    return (0.0, 100.0) if "%" in text and inside else None


@plain_figure
def rounds_figure(rows: list[tuple[str, list[tuple[int, float, float, float]]]], ylabel: str) -> Figure:
    """Adaptive seeds: each delta's sequential interval at every round it was judged (x: seeds), side by side
    per comparison; 0 as a dashed line. Infinite ends (below 2 seeds) are left out."""
    import math

    figure = new_figure(max(4.5, 1.0 * len(rows) + 3.0), 3.6)
    ax = figure.subplots()
    width = 0.8 / max(1, len(rows))
    for index, (name, looks) in enumerate(rows):
        shown = [(n, d, lo, hi) for n, d, lo, hi in looks if math.isfinite(lo) and math.isfinite(hi)]
        xs = [n + (index - (len(rows) - 1) / 2) * width for n, _, _, _ in shown]
        deltas = [d for _, d, _, _ in shown]
        errors = [[d - lo for _, d, lo, _ in shown], [hi - d for _, d, _, hi in shown]]
        ax.errorbar(xs, deltas, yerr=errors, fmt="o-", capsize=3, label=label(name), color=f"C{index % 10}")
    ax.axhline(0.0, color="0.4", linestyle="--", linewidth=1)
    # Symmetric about 0 and bounded by the data (a percent delta never beyond ±100).
    ends = [abs(v) for _, looks in rows for n, d, lo, hi in looks for v in (d, lo, hi) if math.isfinite(v)]
    half = (min(max(ends), 100.0) if "%" in ylabel else max(ends)) if ends else 0.0
    if half > 0:
        ax.set_ylim(-1.05 * half, 1.05 * half)
    ax.set(xlabel="seeds per cell", ylabel=label(ylabel))
    ax.legend(fontsize=7, loc="best")
    ax.grid(axis="y", alpha=0.3)
    return figure
