"""Adaptive seeds: when a delta to the baseline is resolved, looking after every round of seeds.

The rule is a group-sequential paired t-test with alpha spending (torch-free, numpy + scipy):

- Looks are planned in advance: after `initial` seeds, then every `step` seeds, and at `max`
  (3, 5, 7, 9, 11, 12 for initial 3, step 2, max 12). Look k gets alpha_k of the family's alpha:
  `final_share` of it at the last look (where the fixed grid would decide), the rest split evenly
  over the interim looks. Sum over looks = alpha.
- Across the comparisons of a family (every ablation cell against its baseline cell) each look's
  alpha is split evenly (Bonferroni): a comparison at look k uses alpha_k / m.
- At a look, a comparison's interval is the paired t-interval of its per-seed differences at
  level 1 - alpha_k / m. The union bound over looks and comparisons bounds the chance that any
  interval ever misses its true delta by alpha, whatever rows stop when: this is why looking after
  every round does not inflate errors. Holm's step-down is not used at a look, because a row that
  stopped earlier has no test at the later look; Bonferroni stays valid under that.

Assumptions (the bench checks what they buy, bench/adaptive_seeds.py): a cell's paired
differences are independent across seeds and roughly normal (the t-interval's own assumption),
and a seed's result does not decide whether the seed's run finishes (failed runs are missing at
random). The differences' variance may differ from row to row (nothing is pooled).

Stop rules, in the table's unit (after `scale`, e.g. points of top-1):
- `excludes_zero`: resolved when the interval excludes 0;
- `halfwidth: h`: resolved when the interval excludes 0 or its half-width is at most h;
- `margin: m`: resolved when the interval excludes 0 or lies inside (-m, +m).
A comparison that is not resolved at `max` seeds stops there ("max").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

ALPHA = 0.05
"""Family-wise error rate over every look and every comparison of a family."""
FINAL_SHARE = 0.8
"""Share of alpha spent at the last look (max seeds); the rest is split over the interim looks. More at the
end keeps the decisions at max close to a fixed grid's, less stops large deltas sooner: bench/adaptive_seeds.py
prints the trade-off (0.8 costs a few % more seeds than 0.5 and agrees with the fixed grid more often)."""

StopKind = Literal["excludes_zero", "halfwidth", "margin"]
Decision = Literal["+", "-", "0"]
"""The sign of a resolved delta, or 0: its interval contains 0 (within noise)."""
State = Literal["open", "resolved", "max"]
Reason = Literal["", "excludes_zero", "narrow", "within_margin", "max"]


@dataclass(frozen=True)
class StopRule:
    """When a comparison's delta counts as resolved (`value` in the table's unit)."""

    kind: StopKind
    value: float = 0.0
    """Half-width (halfwidth) or margin (margin); unused for excludes_zero."""

    def describe(self) -> str:
        """`interval half-width <= 0.3 or excludes 0`."""
        if self.kind == "halfwidth":
            return f"interval excludes 0 or its half-width is at most {self.value:g}"
        if self.kind == "margin":
            return f"interval excludes 0 or lies within ±{self.value:g}"
        return "interval excludes 0"


def looks(initial: int, step: int, maximum: int) -> tuple[int, ...]:
    """Seeds per comparison at each planned look: initial, initial + step, ..., max (max always a look)."""
    if not 2 <= initial <= maximum or step < 1:
        raise ValueError(f"looks need 2 <= initial <= max and step >= 1 (got {initial}, {step}, {maximum})")
    out = list(range(initial, maximum, step))
    return (*out, maximum)


def spend(n_looks: int, alpha: float = ALPHA, final_share: float = FINAL_SHARE) -> tuple[float, ...]:
    """Alpha of each look: `final_share` at the last, the rest evenly over the interim ones (sum = alpha)."""
    if n_looks == 1:
        return (alpha,)
    interim = alpha * (1.0 - final_share) / (n_looks - 1)
    return (*([interim] * (n_looks - 1)), alpha * final_share)


def t_interval(diffs: Any, alpha: Any) -> tuple[Any, Any, Any]:
    """(mean, low, high) of the paired t-interval at level 1 - alpha along the last axis.

    Vectorised (the bench runs it on 10,000 tables at once); fewer than 2 values give an
    infinite interval; identical values a zero-width one.
    """
    import numpy as np
    from scipy import stats

    x = np.asarray(diffs, dtype=float)
    n = x.shape[-1]
    mean = x.mean(axis=-1)
    if n < 2:
        return mean, np.full_like(mean, -np.inf), np.full_like(mean, np.inf)
    sd = x.std(axis=-1, ddof=1)
    sd = np.where(sd <= 1e-12 * np.maximum(1.0, np.abs(mean)), 0.0, sd)  # equal up to float rounding
    half = stats.t.ppf(1.0 - np.asarray(alpha) / 2.0, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def reason_of(low: Any, high: Any, rule: StopRule) -> Any:
    """Why each interval is resolved under `rule` ('' where it is not), vectorised over arrays."""
    import numpy as np

    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    excludes = (low > 0) | (high < 0)
    out = np.where(excludes, "excludes_zero", "")
    if rule.kind == "halfwidth":
        out = np.where(~excludes & ((high - low) / 2.0 <= rule.value), "narrow", out)
    elif rule.kind == "margin":
        out = np.where(~excludes & (low > -rule.value) & (high < rule.value), "within_margin", out)
    return out


def decision_of(low: Any, high: Any) -> Any:
    """'+' / '-' where the interval excludes 0 on that side, '0' where it contains 0 (vectorised)."""
    import numpy as np

    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    return np.where(low > 0, "+", np.where(high < 0, "-", "0"))


@dataclass(frozen=True)
class Verdict:
    """One comparison after one look: its interval, decision and whether it stops."""

    n: int
    """Paired seeds the look used."""
    delta: float
    low: float
    high: float
    decision: Decision
    state: State
    """open: gets more seeds; resolved: stopped by the rule; max: stopped at max seeds unresolved."""
    reason: Reason
    alpha: float
    """The interval's alpha (this look's share, divided by the family size)."""

    @property
    def halfwidth(self) -> float:
        """Half the interval's width (inf below 2 seeds)."""
        return (self.high - self.low) / 2.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (adaptive.json); infinite ends as None."""
        finite = {k: (v if math.isfinite(v) else None) for k, v in (("low", self.low), ("high", self.high))}
        return {"n": self.n, "delta": self.delta, **finite, "decision": self.decision, "state": self.state,
                "reason": self.reason, "alpha": self.alpha}  # fmt: skip


@dataclass(frozen=True)
class Design:
    """A whole adaptive plan: its looks, alpha per look, the stop rule and the family size."""

    seeds: tuple[int, ...]
    """Paired seeds at each look (see `looks`)."""
    rule: StopRule
    family: int
    """Comparisons corrected together (Bonferroni)."""
    alpha: float = ALPHA
    final_share: float = FINAL_SHARE

    @property
    def alphas(self) -> tuple[float, ...]:
        """Per-comparison alpha at each look."""
        return tuple(a / max(1, self.family) for a in spend(len(self.seeds), self.alpha, self.final_share))

    def judge(self, diffs: Sequence[float], look: int) -> Verdict:
        """The verdict on one comparison's paired differences (seed order) at look `look` (0-based).

        Fewer differences than the look planned (failed runs) still use this look's alpha; at the last
        look, or with `max` differences, an unresolved comparison stops at max.
        """
        alpha = self.alphas[min(look, len(self.seeds) - 1)]
        mean, low, high = (float(v) for v in t_interval(list(diffs), alpha))
        reason = str(reason_of(low, high, self.rule))
        state: State = "resolved" if reason else "open"
        if not reason and (look >= len(self.seeds) - 1 or len(diffs) >= self.seeds[-1]):
            state, reason = "max", "max"
        decision = str(decision_of(low, high))
        return Verdict(len(diffs), mean, low, high, decision, state, reason, alpha)  # type: ignore[arg-type]


def replay(diffs: Any, design: Design) -> tuple[Any, Any]:
    """The rule on recorded paired differences (..., rows, max seeds), seed order as recorded.

    Returns (seeds used per row, decision per row); an open row gets the next look's seeds. The
    bench replays 10,000 simulated tables at once with it, and a real grid seed by seed.
    """
    import numpy as np

    x = np.asarray(diffs, dtype=float)
    used = np.zeros(x.shape[:-1], dtype=int)
    decisions = np.full(x.shape[:-1], "0")
    open_ = np.ones(x.shape[:-1], dtype=bool)
    for look, n in enumerate(design.seeds):
        _, low, high = t_interval(x[..., :n], design.alphas[look])
        used = np.where(open_, n, used)
        decisions = np.where(open_, decision_of(low, high), decisions)
        open_ &= reason_of(low, high, design.rule) == ""
    return used, decisions
