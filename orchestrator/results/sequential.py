"""Adaptive seeds: when a delta to the baseline is resolved, looking after every round of seeds.

The rule is a group-sequential paired t-test with alpha spending, Holm's step-down over the
family and a non-binding futility stop (torch-free, numpy + scipy):

- Looks are planned in advance: after `initial` seeds, then every `step` seeds, and at `max`
  (3, 5, 7, 9, 11, 12 for initial 3, step 2, max 12). The spending plan gives the last look
  `final_share` of a comparison's alpha and splits the rest evenly over the interim looks.
- Boundaries are exact for the plan: look k's z-boundary is the one at which the chance of first
  crossing at look k, given no crossing before, is look k's share (recursive numerical integration
  of the looks' joint normal law, Armitage, McPherson and Rowe 1969; Jennison and Turnbull 2000,
  ch. 19). Most paths that would cross at an interim look cross at the last one too, so the last
  boundary is close to the fixed test's (2.53 against 2.50 in z at alpha 0.0125, 6 looks) while a
  Bonferroni split over the looks would test the last look at 80% of alpha. A look's t-interval uses
  the boundary's nominal level with its own degrees of freedom (J&T section 11.4: the
  significance-level approach to group-sequential t-tests); the last look's level is then
  calibrated on simulated null sequences so that the t-tests' chance of ever crossing is the
  comparison's level (`nominal_levels`).
- Across a family (every ablation cell against its baseline cell), Holm's step-down in its
  sequential form (Maurer and Bretz 2013): a comparison is tested at alpha / (family - rejected),
  `rejected` counting the comparisons whose interval has excluded 0 so far; when one more is
  rejected, every other comparison is judged again at the larger level, stopped ones at the look
  where they stopped. If a true-null comparison is the first such one rejected, it was rejected
  at a level of at most alpha / (true nulls), so family-wise errors stay at most alpha however rows
  stop and whatever the comparisons' dependence.
- Futility (non-binding): an open comparison stops when the predictive probability that its last
  look would exclude 0 (either side; t with n - 1 degrees of freedom around the mean and spread
  as estimated so far) is below `futility`. Stopping a comparison never raises the
  chance of a false positive: the boundaries are computed as if nothing ever stopped for futility.

Assumptions (the bench checks what they buy, bench/adaptive_seeds.py): a cell's paired
differences are independent across seeds and roughly normal, and a seed's result does not decide
whether the seed's run finishes (failed runs are missing at random). The differences' variance may
differ from row to row (nothing is pooled).

Stop rules, in the table's unit (after `scale`, e.g. points of top-1):
- `excludes_zero`: resolved when the interval excludes 0;
- `halfwidth: h`: resolved when the interval excludes 0 or its half-width is at most h;
- `margin: m`: resolved when the interval excludes 0 or lies inside (-m, +m).
A comparison whose delta is unlikely to resolve by `max` stops as futile; one still unresolved at
`max` seeds stops there ("max").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.results.boundaries import ALPHA, FINAL_SHARE, nominal_levels

FUTILITY = 0.05
"""Default futility threshold: an open comparison stops when the predictive probability that its last look
excludes 0 falls below this (0 turns futility stops off). bench/adaptive_seeds.py prints the trade-off."""
StopKind = Literal["excludes_zero", "halfwidth", "margin"]
Decision = Literal["+", "-", "0"]
"""The sign of a resolved delta, or 0: its interval contains 0 (within noise)."""
State = Literal["open", "resolved", "futile", "max"]
Reason = Literal["", "excludes_zero", "narrow", "within_margin", "futile", "max"]


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
    sd = _spread(x, mean)
    half = stats.t.isf(np.asarray(alpha) / 2.0, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _spread(x: Any, mean: Any) -> Any:
    """Sample sd along the last axis; 0 where the values are equal up to float rounding."""
    import numpy as np

    sd = x.std(axis=-1, ddof=1)
    return np.where(sd <= 1e-12 * np.maximum(1.0, np.abs(mean)), 0.0, sd)


def predictive_power(mean: Any, sd: Any, n: int, total: int, critical: Any) -> Any:
    """Chance that the last look (`total` seeds, t-boundary `critical`) excludes 0, on either side, predicted
    from n seeds: the remaining seeds' mean ~ mean + t(n-1) x sd x sqrt(1/rest + 1/n) (the estimate's own
    uncertainty included; sd as estimated so far). Vectorised; 1 where nothing can be judged yet (n < 2)."""
    import numpy as np
    from scipy import stats

    mean, sd = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)
    rest = total - n
    if n < 2 or rest <= 0:
        return np.ones_like(mean)
    reach = critical * sd * math.sqrt(total)  # |sum of all differences| the last look needs
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = sd * math.sqrt(1.0 / rest + 1.0 / n)
        above = stats.t.sf(((reach - n * mean) / rest - mean) / scale, n - 1)
        below = stats.t.cdf(((-reach - n * mean) / rest - mean) / scale, n - 1)
    return np.nan_to_num(above + below, nan=0.0)


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
    """open: gets more seeds; resolved: stopped by the rule; futile: stopped, unlikely to resolve by max;
    max: stopped at max seeds unresolved."""
    reason: Reason
    alpha: float
    """The interval's nominal alpha (the look's boundary at the comparison's Holm level)."""
    look: int = 0
    """The planned look (0-based) the interval belongs to."""

    @property
    def halfwidth(self) -> float:
        """Half the interval's width (inf below 2 seeds)."""
        return (self.high - self.low) / 2.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (adaptive.json); infinite ends and a missing mean as None."""
        finite = {k: (v if math.isfinite(v) else None) for k, v in (("low", self.low), ("high", self.high))}
        return {
            "n": self.n,
            "delta": self.delta if math.isfinite(self.delta) else None,  # no pair: no mean (JSON has no NaN)
            **finite,
            "decision": self.decision,
            "state": self.state,
            "reason": self.reason,
            "alpha": self.alpha,
            "look": self.look,
        }


@dataclass(frozen=True)
class Design:
    """A whole adaptive plan: its looks, alpha spending, the stop rule, the family and the futility threshold."""

    seeds: tuple[int, ...]
    """Paired seeds at each look (see `looks`)."""
    rule: StopRule
    family: int
    """Comparisons corrected together (Holm)."""
    alpha: float = ALPHA
    final_share: float = FINAL_SHARE
    futility: float = FUTILITY
    """Stop an open comparison whose predictive power at max is below this (0: never)."""

    def level(self, rejected: int = 0) -> float:
        """Holm's level of a comparison once `rejected` of the family have excluded 0."""
        return self.alpha / max(1, self.family - rejected)

    def nominal(self, look: int, rejected: int = 0) -> float:
        """Two-sided nominal alpha of the boundary at `look` (0-based) for Holm's level after `rejected`."""
        return nominal_levels(self.seeds, self.level(rejected), self.final_share)[min(look, len(self.seeds) - 1)]

    @property
    def alphas(self) -> tuple[float, ...]:
        """Nominal alpha of each look before any comparison is rejected."""
        return tuple(self.nominal(look) for look in range(len(self.seeds)))

    def critical(self, look: int, rejected: int = 0, n: int | None = None) -> float:
        """The t-boundary at `look` with n seeds (the look's planned seeds by default)."""
        from scipy import stats

        seeds = n if n is not None else self.seeds[min(look, len(self.seeds) - 1)]
        return float(stats.t.isf(self.nominal(look, rejected) / 2.0, seeds - 1)) if seeds > 1 else math.inf

    def criticals(self, family: int) -> Any:
        """The t-boundaries [rejected so far (0..family), look] at the looks' planned seeds."""
        import numpy as np

        looks_ = range(len(self.seeds))
        return np.array([[self.critical(look, rejected) for look in looks_] for rejected in range(family + 1)])

    def judge(self, diffs: Sequence[float], look: int, rejected: int = 0) -> Verdict:
        """The verdict on one comparison's paired differences (seed order) at look `look` (0-based), with
        `rejected` comparisons of the family already rejected (Holm).

        Fewer differences than the look planned (failed runs) still use this look's boundary; at the last
        look, or with `max` differences, an unresolved comparison stops at max.
        """
        import numpy as np

        look = min(look, len(self.seeds) - 1)
        alpha = self.nominal(look, rejected)
        mean, low, high = (float(v) for v in t_interval(list(diffs), alpha))
        x = np.asarray(diffs, dtype=float)
        if len(x) >= 2 and float(_spread(x, x.mean())) == 0.0 and not 2 * 0.5 ** len(x) < alpha:
            # Every seed moved alike (a small test set's accuracy moves in steps): the t-interval has no
            # width, but n equal signs are all the evidence, which an exact sign-flip test weighs at
            # p = 2 / 2^n (as the tables do). Not judged until that is below this look's level.
            low, high = -math.inf, math.inf
        reason: str = str(reason_of(low, high, self.rule))
        state = "resolved" if reason else "open"
        if not reason and (look >= len(self.seeds) - 1 or len(diffs) >= self.seeds[-1]):
            state, reason = "max", "max"
        elif not reason and len(diffs) >= 2:
            final = self.critical(len(self.seeds) - 1, rejected)
            if float(predictive_power(mean, _spread(x, x.mean()), len(x), self.seeds[-1], final)) < self.futility:
                state, reason = "futile", "futile"
        decision = str(decision_of(low, high))
        return Verdict(len(diffs), mean, low, high, decision, state, reason, alpha, look)  # type: ignore[arg-type]


def decide(
    design: Design,
    judged: Mapping[str, Sequence[float]],
    look: int,
    stopped: Mapping[str, tuple[Sequence[float], int]] | None = None,
    rejected: int = 0,
) -> dict[str, Verdict]:
    """One round of a family: the verdicts of the open comparisons (`judged`, at `look`), Holm's step-down
    over the family, and the stopped ones (diffs, look where they stopped) that the larger level now rejects.

    `rejected` counts comparisons rejected in earlier rounds (not given here). Stopped comparisons appear in
    the result only when newly rejected; open ones always.
    """
    stopped = stopped or {}
    out: dict[str, Verdict] = {}
    while True:
        count = rejected + sum(v.decision != "0" for v in out.values())
        for key, diffs in judged.items():
            if key not in out or out[key].decision == "0":
                out[key] = design.judge(diffs, look, count)
        for key, (diffs, at) in stopped.items():
            if key not in out and (verdict := design.judge(diffs, at, count)).decision != "0":
                out[key] = verdict
        if rejected + sum(v.decision != "0" for v in out.values()) == count:
            return out


def replay(diffs: Any, design: Design) -> tuple[Any, Any]:
    """The rule on recorded paired differences (..., rows, max seeds), seed order as recorded, with Holm's
    step-down over the rows (rejections counted within each table).

    Returns (seeds used per row, decision per row); an open row gets the next look's seeds. The bench
    replays 10,000 simulated tables at once with it, and a real grid seed by seed; `decide` is its
    one-round, per-comparison form (tests/unit/results/test_sequential.py checks that they agree).
    """
    import numpy as np

    x = np.asarray(diffs, dtype=float)
    shape, rows, last = x.shape[:-1], x.shape[-2], len(design.seeds) - 1
    bounds = design.criticals(rows)  # by (rejected so far, look): the Holm levels the rows can reach
    # Equal differences (no spread): judged by their signs, p = 2 / 2^n, as `judge` does.
    signs_pass = np.array(
        [[2 * 0.5**n < design.nominal(k, r) for k, n in enumerate(design.seeds)] for r in range(rows + 1)]
    )
    used, sign = np.zeros(shape, dtype=int), np.zeros(shape)
    open_, rejected = np.ones(shape, dtype=bool), np.zeros(shape, dtype=bool)
    last_t, last_look, last_equal = np.zeros(shape), np.zeros(shape, dtype=int), np.zeros(shape, dtype=bool)
    for look, n in enumerate(design.seeds):
        part = x[..., :n]
        mean = part.mean(axis=-1)
        sd = _spread(part, mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.nan_to_num(mean / (sd / math.sqrt(n)), nan=0.0, posinf=np.inf, neginf=-np.inf)
        used = np.where(open_, n, used)
        last_t, last_look = np.where(open_, t, last_t), np.where(open_, look, last_look)
        last_equal = np.where(open_, sd == 0, last_equal)
        count = rejected.sum(axis=-1, keepdims=True)
        for _ in range(rows):  # Holm: each rejection raises the others' level
            judged = ~last_equal | signs_pass[count, last_look]
            hit = ~rejected & judged & (np.abs(last_t) >= bounds[count, last_look])
            if not hit.any():
                break
            rejected |= hit
            sign = np.where(hit, np.sign(last_t), sign)
            count = rejected.sum(axis=-1, keepdims=True)
        open_ &= ~rejected
        if design.rule.kind != "excludes_zero":
            half = np.where((sd == 0) & ~signs_pass[count, look], np.inf, bounds[count, look] * sd / math.sqrt(n))
            open_ &= reason_of(mean - half, mean + half, design.rule) == ""
        if look < last and design.futility > 0:
            open_ &= predictive_power(mean, sd, n, design.seeds[-1], bounds[count, last]) >= design.futility
    return used, np.where(sign > 0, "+", np.where(sign < 0, "-", "0"))
