"""How sure a delta is: paired-by-seed differences, 95% intervals, tests, Holm, detectable deltas.

results.resample computes every number as scipy.stats does (without importing it: a quarter of
a second `collect`); this module only picks the method by the number of seeds:

- paired by seed on the seeds both cells hold, when they share 2 or more (a seed's baseline and
  ablation run share data order and initialisation; a run whose seed the other cell lacks, e.g. a
  failed partner, is left out of the delta and counted), Welch's unpaired comparison otherwise;
- a 95% t-interval below BOOTSTRAP_MIN_SEEDS seeds, `scipy.stats.bootstrap` (BCa) from there;
- an exact sign-flip permutation test up to EXACT_MAX_SEEDS paired seeds, `ttest_rel` above
  (Welch's t-test unpaired); Holm's step-down correction across the comparisons of one table;
- the smallest delta a paired t-test detects at 80% power with the seeds run, and the seeds a
  given delta needs (noncentral t).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.results import resample

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.8
BOOTSTRAP_MIN_SEEDS = 20
"""From this many values per cell the interval is a bootstrap (BCa) instead of a t-interval."""
BOOTSTRAP_RESAMPLES = 2000
EXACT_MAX_SEEDS = 12
"""Up to this many paired seeds the p-value is an exact sign-flip test (2^n sign patterns)."""
MIN_SIGN_FLIP_SEEDS = math.ceil(math.log2(2 / ALPHA))
"""Seeds an exact two-sided sign-flip test needs before any p-value can fall below ALPHA (6)."""
MAX_SEEDS_SEARCHED = 100_000


@dataclass(frozen=True)
class Comparison:
    """A cell against its baseline cell: the delta of means, its 95% interval and a p-value."""

    delta: float
    n: int
    """Pairs (paired) or the smaller group's size (unpaired)."""
    paired: bool
    low: float | None = None
    high: float | None = None
    p: float | None = None
    spread: float | None = None
    """Standard deviation of the paired differences (None unpaired or with one pair)."""
    left_out: int = 0
    """Paired: runs of either cell whose seed the other cell lacks, not in the delta."""

    @property
    def has_interval(self) -> bool:
        """Whether there were enough seeds for an interval (2 per side)."""
        return self.low is not None and self.high is not None

    @property
    def within_noise(self) -> bool:
        """The 95% interval contains 0."""
        return self.has_interval and self.low <= 0.0 <= self.high  # type: ignore[operator]


Items = tuple[tuple[str, float], ...]
Memo = dict[tuple[Items, Items], Comparison]
"""Comparisons by content (compare's `memo`); a Comparison is frozen, so one can be shared."""


def compare(values: dict[str, float], baseline: dict[str, float], memo: Memo | None = None) -> Comparison | None:
    """`values` against `baseline` (seed -> value); None when either side is empty. With `memo`,
    the same seeds and values in the same order (an unpaired bootstrap resamples by position) are
    compared once: a table's best mark most often compares the best cell with the very baseline
    its delta was computed against, and from BOOTSTRAP_MIN_SEEDS seeds that is a bootstrap."""
    if not values or not baseline:
        return None
    if memo is None:
        return _compare(values, baseline)
    key = (tuple(values.items()), tuple(baseline.items()))
    if key not in memo:
        memo[key] = _compare(values, baseline)
    return memo[key]


def _compare(values: dict[str, float], baseline: dict[str, float]) -> Comparison:
    """Paired on the shared seeds when there are 2 or more (or both cells hold the same seeds): a
    baseline of seeds 0-3 against a row whose seed 2 failed compares 3 pairs rather than two
    unpaired means, which seed-to-seed variation can flip in sign. Welch's comparison otherwise."""
    shared = sorted(seed for seed in values if seed in baseline)
    if len(shared) >= 2 or set(values) == set(baseline):
        result = paired([values[s] for s in shared], [baseline[s] for s in shared])
        return replace(result, left_out=len(values) + len(baseline) - 2 * len(shared))
    return unpaired(list(values.values()), list(baseline.values()))


def paired(values: Sequence[float], baseline: Sequence[float]) -> Comparison:
    """Paired comparison of equal-length samples (same seeds, same order)."""
    import numpy as np

    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    diff = a - b
    n = len(diff)
    delta = float(diff.mean())
    if n < 2:
        return Comparison(delta, n, True)
    spread = float(diff.std(ddof=1))
    if spread <= 1e-12 * max(1.0, abs(delta)):  # equal up to float rounding (e.g. 0.9 + 0.1 vs 1.0)
        spread = 0.0
    if spread == 0.0:
        # Every seed moved by the same amount: of the 2^n sign patterns only all-plus and all-minus
        # reach |delta|, so the exact sign-flip p is 2 / 2^n (1 when nothing moved). No interval: a
        # t-interval of zero width ([-0.28, -0.28] from 2 seeds that both lost one test image) would
        # claim the delta exact, where the spread that sizes an interval was simply not seen.
        return Comparison(delta, n, True, None, None, 1.0 if delta == 0 else min(1.0, 2.0 * 0.5**n), 0.0)
    test = resample.paired_t(diff, CONFIDENCE)
    low, high = (test.low, test.high) if n < BOOTSTRAP_MIN_SEEDS else _bootstrap((diff,))
    p = sign_flip_p(diff) if n <= EXACT_MAX_SEEDS else test.p
    return Comparison(delta, n, True, float(low), float(high), p, spread)


def unpaired(values: Sequence[float], baseline: Sequence[float]) -> Comparison:
    """Welch comparison of two independent samples (different seeds)."""
    import numpy as np

    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    delta = float(a.mean() - b.mean())
    n = min(len(a), len(b))
    if n < 2 or (a.std() == 0 and b.std() == 0):
        return Comparison(delta, n, False)
    test = resample.welch_t(a, b, CONFIDENCE)
    low, high = (test.low, test.high) if n < BOOTSTRAP_MIN_SEEDS else _bootstrap((a, b))
    return Comparison(delta, n, False, float(low), float(high), test.p)


def sign_flip_p(diff: Any) -> float:
    """Two-sided p-value of the exact sign-flip permutation test of mean(diff) == 0."""
    return resample.sign_flip_p(diff)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (None stays None); adjusted p-values are monotone and <= 1."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    m = len(present)
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        out[index] = running
    return out


def power(n: int, effect: float) -> float:
    """Power of a two-sided paired t-test at ALPHA with n pairs and effect = delta / sd of differences."""
    from scipy import special

    df = n - 1
    critical = special.stdtrit(df, 1 - ALPHA / 2)
    shift = effect * math.sqrt(n)
    upper = float(1 - special.nctdtr(df, shift, critical))
    lower = float(special.nctdtr(df, shift, -critical))
    if not math.isfinite(lower) and special.ndtr(-shift) < 1e-12:
        # scipy's noncentral t is NaN for some far tails (df 1-3, shifts 8-12): rejecting on the
        # wrong side needs Z < -shift, so that term is below ndtr(-shift), negligible here.
        lower = 0.0
    if math.isfinite(upper) and math.isfinite(lower):
        return upper + lower
    # Both tails NaN only for large shifts, where the normal approximation is exact enough.
    return float(special.ndtr(shift - critical) + special.ndtr(-critical - shift))


def detectable_delta(n: int, spread: float) -> float | None:
    """Smallest |delta| a paired t-test detects with POWER at n pairs and this sd of differences."""
    if n < 2 or not spread > 0:
        return None
    low, high = 1e-9, 1e3  # power grows with the effect: bisect (scipy.optimize's import was 0.5 s)
    while high - low > 1e-12 * max(1.0, low):
        middle = (low + high) / 2
        low, high = (middle, high) if power(n, middle) < POWER else (low, middle)
    return float((low + high) / 2 * spread)


def seeds_needed(delta: float, spread: float) -> int | None:
    """Fewest seeds for which a paired t-test detects `delta` with POWER (at least the sign-flip
    test's minimum); None when even MAX_SEEDS_SEARCHED would not do."""
    if not spread > 0:
        return MIN_SIGN_FLIP_SEEDS
    effect = abs(delta) / spread
    if effect == 0 or power(MAX_SEEDS_SEARCHED, effect) < POWER:
        return None
    low, high = 2, MAX_SEEDS_SEARCHED
    while low < high:  # power grows with n: bisect for the first n that reaches it
        mid = (low + high) // 2
        if power(mid, effect) >= POWER:
            high = mid
        else:
            low = mid + 1
    return max(low, MIN_SIGN_FLIP_SEEDS)


def pooled_spread(spreads: Sequence[tuple[float, int]]) -> float | None:
    """Pooled standard deviation of (sd, n) pairs, weighted by their degrees of freedom."""
    usable = [(sd, n) for sd, n in spreads if n >= 2 and math.isfinite(sd)]
    df = sum(n - 1 for _, n in usable)
    if not df:
        return None
    return math.sqrt(sum((n - 1) * sd * sd for sd, n in usable) / df)


def _bootstrap(data: tuple[Any, ...]) -> tuple[float, float]:
    """95% BCa bootstrap interval of the mean (difference) with a fixed seed (the same table on every
    collect); the percentile interval where BCa is undefined (nearly constant data)."""
    for method in ("BCa", "percentile"):
        low, high = resample.bootstrap_interval(data, CONFIDENCE, BOOTSTRAP_RESAMPLES, method)
        if math.isfinite(low) and math.isfinite(high):
            break
    return low, high
