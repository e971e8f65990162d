"""The table view model: cells, rows and tables with every number computed; templates only format."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from orchestrator.results.stats import ALPHA

# Marks a complexity cell over the spec's budget; the table's notes explain it.
BUDGET_MARK = "†"
# Marks a delta the table's test does not tell from 0; the table's notes explain it.
NOISE_MARK = "°"
# How an adaptive-seeds cell's stop text says its sequential interval excluded 0 (results.adaptive).
EXCLUDES_ZERO = "interval excludes 0"


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One table cell, every number already computed; `n == 0` renders as `-`.

    The `*_text` properties are the numbers as strings (one formatting rule for every
    output format); templates only add markup around them (bold, ±, escaping).
    """

    mean: float | None
    std: float | None
    n: int
    n_expected: int
    delta: float | None = None
    """Difference to the baseline row, in the cell's unit (absolute) or percent (relative)."""
    relative: bool = False
    """Whether `delta` is a relative change in percent (complexity columns)."""
    best: bool = False
    decimals: int = 2
    over_budget: bool = False
    """Complexity cell above the spec's budget."""
    low: float | None = None
    """Lower end of the delta's 95% interval (None: fewer than 2 seeds on a side, or no delta)."""
    high: float | None = None
    """Upper end of the delta's 95% interval."""
    p: float | None = None
    """p-value of the delta (exact sign-flip or t-test, see orchestrator/results/stats.py)."""
    p_adjusted: float | None = None
    """`p` after Holm's correction across the table's comparisons."""
    broken: int = 0
    """Runs of the cell left out because a file or value of theirs is broken (not counted as missing)."""
    stop: str | None = None
    """Adaptive seeds: how the cell stopped (`resolved at 5 seeds (...)`, `stopped at max (12 seeds)`)."""

    @property
    def empty(self) -> bool:
        """No finished run: rendered as `-`."""
        return self.n == 0 or self.mean is None

    @property
    def mean_text(self) -> str:
        """`89.47`."""
        return "-" if self.mean is None else f"{self.mean:.{self.decimals}f}"

    @property
    def std_text(self) -> str | None:
        """`0.12`, or None for a single value."""
        return None if self.std is None or math.isnan(self.std) else f"{self.std:.{self.decimals}f}"

    @property
    def delta_text(self) -> str | None:
        """`-0.02` or `+0.11%` (relative), or None for the baseline row."""
        if self.delta is None or self.empty:
            return None
        if self.relative:
            # The same model as the baseline row: report 004 prints the bare value.
            if self.delta == 0:
                return None
            return f"{self.delta:+.2f}%"
        return f"{self.delta:+.{self.decimals}f}"

    @property
    def interval_text(self) -> str | None:
        """`[-1.98, +2.98]`: the delta's 95% interval, or None without one."""
        if self.delta_text is None or self.low is None or self.high is None:
            return None
        return f"[{self.low:+.{self.decimals}f}, {self.high:+.{self.decimals}f}]"

    @property
    def within_noise(self) -> bool:
        """A delta the table's own test does not tell from 0: its Holm-adjusted p is ALPHA or more,
        or too few seeds for a test (marked, explained in the notes). By the test the table reports,
        not by the interval: a 3-seed t-interval can exclude 0 where no exact test at 3 pairs can
        reject (p >= 0.25), and a table's family is judged together (Holm), each interval alone.
        A cell of one seed is not marked: it says `no interval` (seeds_text)."""
        if self.delta_text is None or self.relative:
            return False
        if self.stop is not None and self.stop != "baseline":
            # Adaptive seeds: the sequential rule decided it (alpha spent over the looks, Holm), which a
            # fixed-seed test at its 3 or 5 seeds never could (an exact test's p is 0.25 or 0.0625 there).
            return EXCLUDES_ZERO not in self.stop
        if self.p_adjusted is None:
            return self.n > 1  # no test: too few seeds on the baseline's side, or no spread anywhere
        return not self.p_adjusted < ALPHA

    @property
    def noise_mark(self) -> str:
        """NOISE_MARK for a delta within noise, else ''."""
        return NOISE_MARK if self.within_noise else ""

    @property
    def seeds_text(self) -> str | None:
        """`3/5 seeds`, `1 broken`, `1 seed, no interval`: how many runs the numbers stand on."""
        if self.relative or (self.empty and not self.broken):
            return None
        parts = []
        if self.n < self.n_expected:
            parts.append(f"{self.n}/{self.n_expected} seeds")
        elif self.n == 1:
            parts.append("1 seed")
        if self.broken:
            parts.append(f"{self.broken} broken")
        if self.n == 1:
            parts.append("no interval")
        return ", ".join(parts) or None

    @property
    def text(self) -> str:
        """Plain text of the cell (CSV, tests): `89.47 ± 0.12 (-0.02 [-0.30, +0.26])° (3/5 seeds)`."""
        if self.empty:
            return "-" + (f" ({self.seeds_text})" if self.seeds_text else "")
        out = self.mean_text
        if self.std_text is not None:
            out += f" ± {self.std_text}"
        if self.delta_text is not None:
            interval = f" {self.interval_text}" if self.interval_text else ""
            out += f" ({self.delta_text}{interval}){self.noise_mark}"
        if self.seeds_text is not None:
            out += f" ({self.seeds_text})"
        if self.over_budget:
            out += BUDGET_MARK
        return out


@dataclass
class Row:
    """One table row: its label, cells (scores then complexity) and row group."""

    label: str
    cells: list[Cell]
    group: str | None = None
    """Row-group heading this row belongs to (None: no groups)."""
    first_in_group: bool = False
    """The template starts a new group heading before this row."""


@dataclass(frozen=True)
class HeaderSpan:
    """One spanning header above the column headers."""

    label: str
    width: int
    first: int
    last: int


@dataclass
class Table:
    """One rendered table: e.g. a backbone's ablation ladder for one metric."""

    title: str
    row_header: str
    columns: list[str]
    """Header of every cell column (scores, then GFLOPs and Params)."""
    header_groups: list[tuple[str, int]] | None = None
    """Spanning headers above `columns` ((label, span), '' over the row header and complexity)."""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    name: str = "table"
    """File stem of the table spec this table comes from."""
    problems: list[str] = field(default_factory=list)
    """Runs left out of the numbers: `run_id name: reason` (a footnote of every format)."""

    @property
    def width(self) -> int:
        """Columns including the row-label column."""
        return 1 + len(self.columns)

    @property
    def header_spans(self) -> list[HeaderSpan]:
        """`header_groups` with their 1-based first and last column (LaTeX \\cmidrule, HTML colspan)."""
        spans: list[HeaderSpan] = []
        first = 1
        for label, width in self.header_groups or []:
            spans.append(HeaderSpan(label, width, first, first + width - 1))
            first += width
        return spans

    @property
    def flat_columns(self) -> list[str]:
        """Column headers with their spanning header prepended (formats without spans)."""
        if not self.header_groups:
            return list(self.columns)
        owners = [label for label, span in self.header_groups[1:] for _ in range(span)]
        return [f"{o}: {c}" if o else c for o, c in zip(owners, self.columns, strict=True)]
